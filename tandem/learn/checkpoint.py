"""Training checkpoints, one JSON file per party and training job, so a rerun resumes.

A job is named by a fingerprint of everything that shapes its trees on this side (the
settings, the party names, this party's aligned rows, features and labels), so a rerun
with other data or settings never picks up a stale checkpoint. The label holder writes
its completed trees after each tree; a passive party writes its split table whenever it
makes splits, before the label holder hears of them, so it never lags behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.learn.secureboost.shared import Resume
from tandem.learn.tree import Tree

FORMAT = "tandem-boost-checkpoint/1"


def fingerprint(settings: dict, *arrays: np.ndarray, ids: list[str]) -> str:
    """Hex digest of the job's settings, row ids (in order) and arrays."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update("\n".join(ids).encode())
    for a in arrays:
        h.update(str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def path_for(folder: Path, job: str) -> Path:
    return Path(folder) / f"train-{job}.json"


def save_active(path: Path, job: str, resume: Resume) -> None:
    data = {
        "format": FORMAT,
        "job": job,
        "trees": [asdict(t) for t in resume.trees],
        "split_ids": [[[n, p, sid] for n, (p, sid) in ids.items()] for ids in resume.split_ids],
        "scores": resume.scores,
        "goss_seed": resume.goss_seed,
    }
    write_atomically(path, json.dumps(data).encode(), mode=0o600)


def load_active(path: Path, job: str) -> Resume | None:
    data = _read(path, job)
    if data is None:
        return None
    for t in data["trees"]:  # JSON lists -> the tuples of categorical splits (none in older checkpoints)
        t["left_bins"] = [tuple(b) for b in t.get("left_bins", [()] * len(t["value"]))]
    trees = [Tree(**t) for t in data["trees"]]
    ids = [{int(n): (int(p), str(sid)) for n, p, sid in t} for t in data["split_ids"]]
    return Resume(trees, ids, [float(s) for s in data["scores"]], data.get("goss_seed"))


def save_passive(path: Path, job: str, splits: dict[str, tuple[int, int, bool, int, tuple[int, ...]]]) -> None:
    data = {"format": FORMAT, "job": job, "splits": {sid: [*s[:4], list(s[4])] for sid, s in splits.items()}}
    write_atomically(path, json.dumps(data).encode(), mode=0o600)


def load_passive(path: Path, job: str) -> dict[str, tuple[int, int, bool, int, tuple[int, ...]]]:
    """Split id -> (feature, bin, missing_left, tree, left bins); older checkpoints hold no left bins."""
    data = _read(path, job)
    if data is None:
        return {}
    return {
        sid: (int(s[0]), int(s[1]), bool(s[2]), int(s[3]), tuple(int(b) for b in (s[4] if len(s) > 4 else ())))
        for sid, s in data["splits"].items()
    }


def _read(path: Path, job: str) -> dict | None:
    """The checkpoint if it is whole and of this job; anything else counts as none (a fresh start)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT and data.get("job") == job else None


def remove(path: Path) -> None:
    Path(path).unlink(missing_ok=True)
