"""Files appear whole or not at all: write to a temp file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tandem.errors import InputError


def write_atomically(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` (creating its folder) so that readers never see a partial file.

    ``mode`` 0o600 for secrets (keys, kept protocol state). An unwritable place is an
    ``InputError`` naming the path; the temp file never outlives a failure.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
