"""Files appear whole or not at all (a temp file beside the target, renamed), writes complete, folders fsynced."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tandem.errors import InputError


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, looping over short writes (``os.write`` may take less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_durably(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to ``path`` (mode 0600, created if missing), whole and fsynced, or raise ``OSError``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a log written with ``append_durably`` (none if it is missing); a line cut short
    by a crash, or anything else that is not a JSON object, is skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a file's creation, rename or removal in ``folder`` durable (the folder's own fsync)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        fsync_dir(path.parent)  # the rename itself survives a power loss
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
