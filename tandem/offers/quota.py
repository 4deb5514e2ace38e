"""How much personalised content the bank may draw from the marketplace (docs/privacy.md, "Offers").

The bank asks for a client's content only once it offers that client the product, and its offers are
bounded by its contact limits; the marketplace cannot see those offers, so it holds the bank to the
volume the partners agreed: ``daily`` distinct (product, link id) reveals per UTC day (``[offers]
content_daily``; 0: none). Asking again for content already revealed that day counts nothing. A trip
is refused whole (nothing of the request is revealed), counted and logged once per episode;
``tandem audit --reconcile`` compares both nodes' logs of what was asked and answered.

The day's reveals are appended (and fsynced) to ``FOLDER/content-YYYY-MM-DD.tsv`` before they are
answered, so a restart does not start the day afresh; earlier days' files are removed.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from tandem.atomic import append_durably


class ContentQuota:
    """``admit(product, link_ids)`` -> ``None`` (go ahead, counted and recorded) or seconds to wait.
    Raises ``OSError`` if the reveals could not be recorded (then nothing may be revealed)."""

    def __init__(self, peer: str, daily: int, folder: Path | None = None):
        self.peer, self.daily = peer, daily
        self.folder = folder if daily else None  # without a quota there is nothing to count
        self.refused = 0
        self._lock = threading.Lock()  # the route runs on a thread pool
        self._day = int(time.time() // 86400)
        self._revealed = self._load(self._day)
        self._tripped = False

    def admit(self, product: str, link_ids: list[str], wall: float | None = None) -> float | None:
        with self._lock:
            return self._admit(product, link_ids, time.time() if wall is None else wall)

    def _admit(self, product: str, link_ids: list[str], wall: float) -> float | None:
        if not self.daily:
            return None
        day = int(wall // 86400)
        if day != self._day:
            self._day, self._revealed = day, self._load(day)
        new = {(product, lid) for lid in link_ids} - self._revealed
        if len(self._revealed) + len(new) > self.daily:
            self.refused += 1
            if not self._tripped:  # one line per episode
                self._tripped = True
                print(
                    f"offers: peer {self.peer} is over its quota of {self.daily} content reveals per day",
                    file=sys.stderr,
                    flush=True,
                )
            return float(max(1, int((day + 1) * 86400 - wall)))
        if new and self.folder is not None:
            append_durably(_day_file(self.folder, day), "".join(f"{p}\t{lid}\n" for p, lid in sorted(new)).encode())
        self._revealed |= new
        self._tripped = False
        return None

    def stats(self) -> dict:
        return {"per_day": self.daily, "today": len(self._revealed), "refused": self.refused}

    def _load(self, day: int) -> set[tuple[str, str]]:
        """The reveals recorded on ``day`` (a torn last line is skipped: it was never answered)."""
        if self.folder is None:
            return set()
        self.folder.mkdir(parents=True, exist_ok=True)
        today = _day_file(self.folder, day)
        for old in self.folder.glob("content-*.tsv"):
            if old != today:
                old.unlink()
        try:
            lines = today.read_text().splitlines()
        except FileNotFoundError:
            return set()
        return {(p, lid) for p, sep, lid in (line.partition("\t") for line in lines) if sep and lid}


def _day_file(folder: Path, day: int) -> Path:
    """The reveals of ``day`` (days since the epoch, UTC)."""
    return folder / f"content-{datetime.fromtimestamp(day * 86400, UTC).date().isoformat()}.tsv"
