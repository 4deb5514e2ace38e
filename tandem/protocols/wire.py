"""The wire format of every message between nodes: typed, versioned, never pickled.

A frame is ``b"TDM"``, one byte of wire version, one byte of message type, a 4-byte
big-endian header length, a UTF-8 JSON header, then a binary payload (for PSI:
concatenated 32-byte group elements). Decoding checks every field's type.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from tandem.protocols.errors import RemoteProtocolError

MAGIC = b"TDM"
WIRE_VERSION = 1
_HEAD = struct.Struct(">3sBBI")
MAX_HEADER = 64 * 1024

_TYPES: dict[int, type] = {}


def message(code: int):
    """Register a frozen dataclass as message type ``code``."""
    def wrap(cls):
        cls = dataclass(frozen=True)(cls)
        cls.CODE = code
        _TYPES[code] = cls
        return cls
    return wrap


class Message:
    """Base of all messages: a ``session`` id and an optional binary ``payload``."""

    CODE: ClassVar[int]
    PAYLOAD: ClassVar[bool] = False

    def encode(self) -> bytes:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "payload"}
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

    PAYLOAD = True

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
        header = json.loads(frame[_HEAD.size:_HEAD.size + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RemoteProtocolError(f"malformed {cls.__name__}: header is not JSON") from None
    payload = frame[_HEAD.size + hlen:]
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
        kwargs[f.name] = value
    if payload and "payload" not in kwargs:
        raise RemoteProtocolError(f"malformed {cls.__name__}: unexpected payload")
    return cls(**kwargs)


def _type_ok(value, annotation) -> bool:
    kinds = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list, "dict[str, int]": dict}
    expected = kinds.get(str(annotation).replace("'", ""))
    if expected is None:
        return True
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected is dict:
        return isinstance(value, dict) and all(isinstance(v, int) for v in value.values())
    return isinstance(value, expected)


# --- link job and PSI messages -------------------------------------------------------------

@message(1)
class LinkRequest(Message):
    """Initiator -> responder: link these entities on these keys, in this priority."""
    session: str
    protocol: str                  # "psi/1"
    entities: list[str]            # "customers", "sellers"
    keys: list[str]                # flattened "entity:key" in priority order
    count_only: bool
    incremental: bool


@message(2)
class LinkAccept(Message):
    session: str


@message(3)
class KeyStart(Message):
    """Both sides, at the start of one (entity, key) run: a nonce for the salt, the set size, and
    the id of the state kept from an earlier run ("" if none; incremental mode only)."""
    session: str
    entity: str
    key: str
    nonce: str                     # hex, 16 bytes
    size: int
    state: str


@message(8)
class Delta(PointMessage):
    """Incremental mode: how many new values follow, and (payload) the blinded values of removed ones."""
    session: str
    entity: str
    key: str
    new: int
    payload: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class PointChunk(PointMessage):
    session: str
    entity: str
    key: str
    seq: int
    last: bool
    payload: bytes = field(default=b"", repr=False)


@message(4)
class Blinded(PointChunk):
    """A chunk of the sender's own set, blinded with its secret."""


@message(5)
class Reblinded(PointChunk):
    """The receiver's chunk ``seq`` blinded again with the sender's secret (same order, or sorted in count-only)."""


@message(6)
class KeyDone(Message):
    """Both sides, after matching: the size of the intersection each found (they must agree)."""
    session: str
    entity: str
    key: str
    intersection: int


@message(7)
class Abort(Message):
    """Terminal: the sender stopped; ``reason`` is one line for the other side's operator."""
    session: str
    reason: str


def peek(frame: bytes) -> tuple[int, str | None]:
    """``(message type, session)`` from a frame's header without decoding the payload; ``(0, None)`` if unreadable."""
    try:
        magic, _version, code, hlen = _HEAD.unpack_from(frame)
        if magic != MAGIC or hlen > MAX_HEADER:
            return 0, None
        session = json.loads(frame[_HEAD.size:_HEAD.size + hlen]).get("session")
        return code, session if isinstance(session, str) else None
    except (struct.error, ValueError, AttributeError):
        return 0, None


# --- federated boosting (SecureBoost) messages ----------------------------------------------

@message(20)
class BoostStart(Message):
    """Active -> passive: training settings; payload = packed bitmap of the training rows."""
    session: str
    n_rows: int
    n_trees: int
    max_depth: int
    bins: int
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(21)
class BoostReady(Message):
    """Passive -> active: how many features (histogram slots) it contributes."""
    session: str
    n_features: int


@message(22)
class PublicKeyMsg(Message):
    """Active -> passive: the homomorphic public key (the secret key never leaves the active party)."""
    session: str
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(23)
class EncryptedGradients(Message):
    """Active -> passive: one packed (gradient, hessian) ciphertext per row, for tree ``tree``."""
    session: str
    tree: int
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(24)
class EncryptedHistograms(Message):
    """Passive -> active: encrypted bucket sums for ``nodes`` (in order), concatenated."""
    session: str
    tree: int
    nodes: list[str]
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(25)
class SplitDecisions(Message):
    """Active -> passive, per frontier node: "leaf", "active" (payload has its left-row bitmap) or
    "passive:FEATURE:BIN:MISSING_LEFT" (a slot of the passive's own histogram)."""
    session: str
    tree: int
    nodes: list[str]
    decisions: list[str]
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(26)
class PassivePartitions(Message):
    """Passive -> active: for each passive split, an opaque split id and (payload) its left-row bitmap."""
    session: str
    tree: int
    nodes: list[str]
    split_ids: list[str]
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(27)
class BoostDone(Message):
    session: str
    n_trees: int


@message(28)
class PredictRequest(Message):
    """Active -> passive: evaluate these passive splits on all ``n_rows`` prediction rows."""
    session: str
    model: str
    n_rows: int
    split_ids: list[str]


@message(29)
class PredictBitmaps(Message):
    """Passive -> active: per requested split, the go-left bitmap of the rows (framed, in order)."""
    session: str
    model: str
    payload: bytes = field(default=b"", repr=False)
    PAYLOAD = True


@message(30)
class TrainRequest(Message):
    """Initiator (label holder) -> a passive party: link on the id column, then train and evaluate."""
    session: str
    protocol: str                  # "boost/1"
    model_id: str
    seed: int
    test_fraction_ppm: int         # test share in parts per million (integers travel exactly)
    n_trees: int
    max_depth: int
    bins: int
    learning_rate: float
    first_tree_active_only: bool


OPENING = (LinkRequest.CODE, TrainRequest.CODE)    # message types that may open a session at a responder
