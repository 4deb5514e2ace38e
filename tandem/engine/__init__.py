"""Where chunked work runs. ``LocalEngine`` (a process pool on this machine) is the default."""

from tandem.engine.local import LocalEngine

__all__ = ["LocalEngine"]
