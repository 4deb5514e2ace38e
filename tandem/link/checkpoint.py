"""Where a node keeps an interrupted PSI run so that a rerun can continue (``psi_resume`` says how).

One folder per (peer, entity, key) under the state folder, private to the node (0700, files 0600):

    meta.json    id, secret, salt, value digest, chunk size, role, sizes, and per stream the points
                 and a short SHA-256 of each completed chunk; rewritten atomically after each chunk,
                 with a digest of itself
    order.npy    the sending order, int64, read with ``allow_pickle=False``
    STREAM.bin   the points of the completed chunks of each stream, appended and fsynced before
                 ``meta.json`` counts them (bytes past what it counts, from a kill mid-append, are cut)

A checkpoint that is unreadable, whose data do not match their digests, or that the run cannot use is
dropped with one line (``notice``) and the run starts afresh. ``drop`` removes it once the link table
is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tandem.atomic import append_durably, write_atomically
from tandem.crypto.psi_group import POINT_BYTES
from tandem.protocols.psi_resume import STREAMS, Saved

_CHUNK_DIGEST = 16  # hex chars of SHA-256 kept per chunk


def checkpoint_dir(state_dir: Path, peer: str, entity: str, key: str) -> Path:
    return state_dir / "psi-resume" / peer / f"{entity}-{key}"


def _chunk_digest(points: bytes) -> str:
    return hashlib.sha256(points).hexdigest()[:_CHUNK_DIGEST]


class KeyCheckpoint:
    """``psi_resume.Checkpoint`` on disk at ``folder``; ``saved`` is read (and checked) on creation."""

    def __init__(self, folder: Path, notice: Callable[[str], None]):
        self.folder, self.notice = folder, notice
        self._meta: dict = {}
        self.saved: Saved | None = None
        if (folder / "meta.json").exists():
            try:
                self.saved = self._load()
            except (OSError, KeyError, TypeError, ValueError) as exc:
                self.discard(f"unreadable or tampered ({exc})")

    # --- reading an earlier run's ------------------------------------------------------------

    def _load(self) -> Saved:
        raw = json.loads((self.folder / "meta.json").read_text())
        body = {k: v for k, v in raw.items() if k != "check"}
        if raw.get("check") != _self_digest(body):
            raise ValueError("meta.json does not match its digest")
        for stream in STREAMS:
            self._check_stream(stream, body["lengths"][stream], body["digests"][stream])
        order = np.load(self.folder / "order.npy", allow_pickle=False)
        if order.dtype != np.int64 or order.shape != (body["own_size"],):
            raise ValueError("order.npy has the wrong shape")
        if hashlib.sha256(order.tobytes()).hexdigest() != body["order_digest"]:
            raise ValueError("order.npy does not match its digest")
        self._meta = body
        return Saved(
            id=body["id"],
            secret=bytes.fromhex(body["secret"]),
            salt=bytes.fromhex(body["salt"]),
            digest=body["digest"],
            chunk=int(body["chunk"]),
            initiator=bool(body["initiator"]),
            keep=bool(body["keep"]),
            own_size=int(body["own_size"]),
            peer_size=int(body["peer_size"]),
            order=order,
            lengths={s: [int(n) for n in body["lengths"][s]] for s in STREAMS},
            last={s: bool(body["last"][s]) for s in STREAMS},
        )

    def _check_stream(self, stream: str, lengths: list[int], digests: list[str]) -> None:
        """Every counted chunk of ``stream`` is there and matches its digest; bytes past them are cut."""
        if len(lengths) != len(digests):
            raise ValueError(f"{stream}: lengths and digests differ in number")
        path = self.folder / f"{stream}.bin"
        total = sum(lengths) * POINT_BYTES
        if not path.exists():
            if total:
                raise ValueError(f"{stream}.bin is missing")
            return
        with open(path, "r+b") as f:
            for n, digest in zip(lengths, digests, strict=True):
                if _chunk_digest(f.read(n * POINT_BYTES)) != digest:
                    raise ValueError(f"{stream}.bin does not match its digests")
            f.truncate(total)

    # --- the Checkpoint protocol ----------------------------------------------------------

    def begin(self, saved: Saved) -> None:
        self._remove()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(saved.order, dtype=np.int64), allow_pickle=False)
        write_atomically(self.folder / "order.npy", buf.getvalue(), mode=0o600)
        self._meta = {
            "id": saved.id,
            "secret": saved.secret.hex(),
            "salt": saved.salt.hex(),
            "digest": saved.digest,
            "chunk": saved.chunk,
            "initiator": saved.initiator,
            "keep": saved.keep,
            "own_size": saved.own_size,
            "peer_size": saved.peer_size,
            "order_digest": hashlib.sha256(np.ascontiguousarray(saved.order, dtype=np.int64).tobytes()).hexdigest(),
            "lengths": {s: list(saved.lengths[s]) for s in STREAMS},
            "digests": {s: [] for s in STREAMS},
            "last": dict(saved.last),
        }
        self._write_meta()
        self.saved = saved

    def append(self, stream: str, points: bytes, last: bool) -> None:
        append_durably(self.folder / f"{stream}.bin", points)
        self._meta["lengths"][stream].append(len(points) // POINT_BYTES)
        self._meta["digests"][stream].append(_chunk_digest(points))
        self._meta["last"][stream] = last
        self._write_meta()

    def read(self, stream: str, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        with open(self.folder / f"{stream}.bin", "rb") as f:
            f.seek(start * POINT_BYTES)
            data = f.read((stop - start) * POINT_BYTES)
        if len(data) != (stop - start) * POINT_BYTES:
            raise OSError(f"{self.folder}/{stream}.bin is shorter than its checkpoint says")
        return data

    def discard(self, why: str) -> None:
        if self.folder.exists():
            self.notice(f"{self.folder}: checkpoint dropped ({why}); starting afresh")
        self._remove()

    def drop(self) -> None:
        """The run's link table is written: the checkpoint has served."""
        self._remove()

    def _remove(self) -> None:
        self.saved, self._meta = None, {}
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_meta(self) -> None:
        body = dict(self._meta)
        text = json.dumps({**body, "check": _self_digest(body)}, separators=(",", ":"))
        write_atomically(self.folder / "meta.json", text.encode(), mode=0o600)


def _self_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
