"""Where a node keeps incremental-mode state: one ``.npz`` per (peer, entity, key), private to the node.

The file holds the secret scalar, the salt and the blinded sets (``KeyMemory``); it is
written atomically with mode 0600 and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.errors import InputError
from tandem.protocols.psi import KeyMemory

_ARRAYS = ("own_digest", "own_blinded", "own_double", "peer_blinded", "peer_double")


def memory_path(state_dir: Path, peer: str, entity: str, key: str) -> Path:
    return state_dir / "psi" / peer / f"{entity}-{key}.npz"


def load_memory(path: Path) -> KeyMemory | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return KeyMemory(
                state_id=bytes(f["state_id"]).decode(),
                secret=bytes(f["secret"]),
                salt=bytes(f["salt"]),
                **{name: f[name].astype("S32") for name in _ARRAYS},
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: incremental state is unreadable ({exc}); delete it to start afresh") from None


def save_memory(path: Path, memory: KeyMemory) -> None:
    buf = io.BytesIO()
    np.savez(
        buf,
        state_id=np.frombuffer(memory.state_id.encode(), np.uint8),
        secret=np.frombuffer(memory.secret, np.uint8),
        salt=np.frombuffer(memory.salt, np.uint8),
        **{name: getattr(memory, name) for name in _ARRAYS},
    )
    write_atomically(path, buf.getvalue(), mode=0o600)
