"""The frame every message between nodes travels in, and the base of the message types (``wire``).

Typed, versioned, never pickled. A frame is ``b"TDM"``, one byte of wire version, one byte of message type, a 4-byte
big-endian header length, a UTF-8 JSON header, then a binary payload (for PSI:
concatenated 32-byte group elements; several blobs or row bitmaps inside one payload are laid
out by ``tandem.protocols.framing``). Decoding checks every field's type, and every identifier field
(``Message.IDS``: names the receiver builds paths and table keys from) against its strict pattern.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform

from tandem.protocols.errors import RemoteProtocolError

MAGIC = b"TDM"
WIRE_VERSION = 1
_HEAD = struct.Struct(">3sBBI")
MAX_HEADER = 64 * 1024

# Patterns of identifiers a peer sends that the receiver turns into a file, folder, table or row key name.
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # session, model and query ids (hex tokens); no dots, no slashes
NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # party, entity and key names (bank, customers, phone, rows, id)
KEY_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}:[a-z][a-z0-9_]{0,31}")  # "entity:key"

_TYPES: dict[int, type] = {}
_IDS: dict[int, dict[str, re.Pattern[str]]] = {}  # code -> its class's identifier fields (bases' included)
_M = TypeVar("_M", bound="type[Message]")


@dataclass_transform(frozen_default=True)
def message(code: int) -> Callable[[_M], _M]:
    """Register a frozen dataclass as message type ``code``."""

    def wrap(cls: _M) -> _M:
        dataclass(frozen=True)(cls)  # in place: the class itself becomes the dataclass
        cls.CODE = code
        _IDS[code] = {k: v for base in reversed(cls.__mro__) for k, v in vars(base).get("IDS", {}).items()}
        _TYPES[code] = cls
        return cls

    return wrap


class Message:
    """Base of all messages: a ``session`` id and an optional binary ``payload``."""

    CODE: ClassVar[int]
    # field -> the pattern its value (or each item of a list) must match in full; checked by ``decode``,
    # merged along the class's bases (every message's session is a token)
    IDS: ClassVar[dict[str, re.Pattern[str]]] = {"session": TOKEN}

    def encode(self) -> bytes:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(cast(Any, self)) if f.name != "payload"}
        header = json.dumps(fields, separators=(",", ":")).encode()
        payload = getattr(self, "payload", b"") or b""
        return _HEAD.pack(MAGIC, WIRE_VERSION, self.CODE, len(header)) + header + payload

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def records(self) -> int:
        """How many records this message carries (for the audit log)."""
        return 0


class PointMessage(Message):
    """A message whose payload is concatenated 32-byte group elements."""

    payload: bytes

    @property
    def records(self) -> int:
        return len(self.payload) // 32


def decode(frame: bytes) -> Message:
    """Parse one frame; raise ``RemoteProtocolError`` naming what is wrong."""
    if len(frame) < _HEAD.size:
        raise RemoteProtocolError("malformed message: shorter than a frame header")
    magic, version, code, hlen = _HEAD.unpack_from(frame)
    if magic != MAGIC:
        raise RemoteProtocolError("malformed message: not a Tandem frame")
    if version != WIRE_VERSION:
        raise RemoteProtocolError(f"peer speaks wire version {version}, this node speaks {WIRE_VERSION}")
    cls = _TYPES.get(code)
    if cls is None:
        raise RemoteProtocolError(f"malformed message: unknown message type {code}")
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(frame):
        raise RemoteProtocolError("malformed message: bad header length")
    try:
        header = json.loads(frame[_HEAD.size : _HEAD.size + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RemoteProtocolError(f"malformed {cls.__name__}: header is not JSON") from None
    payload = frame[_HEAD.size + hlen :]
    if not isinstance(header, dict):
        raise RemoteProtocolError(f"malformed {cls.__name__}: header is not an object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "payload":
            kwargs["payload"] = payload
            continue
        if f.name not in header:
            raise RemoteProtocolError(f"malformed {cls.__name__}: missing field '{f.name}'")
        value = header[f.name]
        if not _type_ok(value, f.type):
            raise RemoteProtocolError(f"malformed {cls.__name__}: field '{f.name}' has the wrong type")
        pattern = _IDS[code].get(f.name)
        if pattern is not None and not all(
            pattern.fullmatch(v) for v in (value if isinstance(value, list) else [value])
        ):
            raise RemoteProtocolError(f"malformed {cls.__name__}: field '{f.name}' is not a valid identifier")
        kwargs[f.name] = value
    if payload and "payload" not in kwargs:
        raise RemoteProtocolError(f"malformed {cls.__name__}: unexpected payload")
    return cls(**kwargs)


def _type_ok(value, annotation) -> bool:
    kinds = {
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "list[str]": list,
        "dict[str, int]": dict,
        "list[int]": tuple,
    }
    expected = kinds.get(str(annotation).replace("'", ""))
    if expected is None:
        return True
    if expected is tuple:
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected is dict:
        return isinstance(value, dict) and all(isinstance(v, int) for v in value.values())
    return isinstance(value, expected)


def peek(frame: bytes) -> tuple[int, str | None]:
    """``(message type, session)`` from a frame's header without decoding the payload; ``(0, None)`` if unreadable."""
    try:
        magic, _version, code, hlen = _HEAD.unpack_from(frame)
        if magic != MAGIC or hlen > MAX_HEADER:
            return 0, None
        session = json.loads(frame[_HEAD.size : _HEAD.size + hlen]).get("session")
        return code, session if isinstance(session, str) else None
    except (struct.error, ValueError, AttributeError):
        return 0, None
