"""The base of every sans-I/O role, with h11's discipline.

A role is a state machine: messages in, messages out, no I/O. Each role class names its states in
an enum called ``State`` (with at least ``DONE`` and ``ERROR``) and declares one table,
``HANDLERS``, mapping ``(state, message type)`` to the method that handles that message in that
state; anything not in the table is unexpected. ``_receive`` is the one door in:

- a message after ``DONE`` or ``ERROR`` is this side's mistake (``LocalProtocolError``);
- a message the table does not expect, or a handler's ``_fail``, is the peer's mistake
  (``RemoteProtocolError``);
- any exception raised while handling a message (a malformed bitmap, a bad ciphertext, a bug)
  moves the role to ``ERROR`` before it propagates, and its text stays in ``error``; one that is
  not a ``TandemError`` (a bug on this side) propagates as a ``LocalProtocolError`` caused by it.

Local errors reach the peer as remote errors: the driver catches the ``TandemError`` and sends
the peer an ``Abort`` with its text (``Session.abort``), which the peer's session raises as a
``RemoteProtocolError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

from tandem.errors import TandemError
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.message import Message

Handler = Callable[..., Any]


class Role:
    """``state`` holds a member of the subclass's ``State`` enum; ``HANDLERS`` its dispatch table."""

    HANDLERS: ClassVar[dict[tuple[Any, type[Message]], Handler]] = {}
    state: Any
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state.name == "DONE"

    def _receive(self, msg: Message, *context: Any) -> Any:
        """Hand ``msg`` (and any ``context``, e.g. the sending party) to its handler."""
        if self.state.name in ("DONE", "ERROR"):
            raise LocalProtocolError(f"the run is over ({self.state.value}); got {msg.name}")
        handler = self.HANDLERS.get((self.state, type(msg)))
        if handler is None:
            self._fail(self._unexpected(msg, *context))
        try:
            return handler(self, msg, *context)
        except TandemError as exc:
            self.state, self.error = type(self.state).ERROR, self.error or str(exc)
            raise
        except Exception as exc:
            self.state, self.error = type(self.state).ERROR, f"internal error: {type(exc).__name__}: {exc}"
            raise LocalProtocolError(self.error) from exc

    def _unexpected(self, msg: Message, *context: Any) -> str:
        return f"unexpected {msg.name} while {self.state.value}"

    def _fail(self, reason: str) -> NoReturn:
        """The peer broke the protocol: stop for good, with ``reason`` for both operators."""
        self.state, self.error = type(self.state).ERROR, reason
        raise RemoteProtocolError(reason)
