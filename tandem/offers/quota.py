"""How much personalised content the bank may draw from the marketplace (docs/privacy.md, "Offers").

The bank asks for a client's content only once it offers that client the product, and its offers are
bounded by its contact limits; the marketplace cannot see those offers, so it holds the bank to the
volume the partners agreed: ``daily`` distinct (product, link id) reveals per UTC day (``[offers]
content_daily``; 0: none). Asking again for content already revealed that day counts nothing. A trip
is refused whole (nothing of the request is revealed), counted and logged once per episode;
``tandem audit --reconcile`` compares both nodes' logs of what was asked and answered.
"""

from __future__ import annotations

import sys
import time


class ContentQuota:
    """``admit(product, link_ids)`` -> ``None`` (go ahead, counted) or seconds to wait."""

    def __init__(self, peer: str, daily: int):
        self.peer, self.daily = peer, daily
        self.refused = 0
        self._day = -1
        self._revealed: set[tuple[str, str]] = set()
        self._tripped = False

    def admit(self, product: str, link_ids: list[str], wall: float | None = None) -> float | None:
        wall = time.time() if wall is None else wall
        day = int(wall // 86400)
        if day != self._day:
            self._day, self._revealed = day, set()
        new = {(product, lid) for lid in link_ids} - self._revealed
        if self.daily and len(self._revealed) + len(new) > self.daily:
            self.refused += 1
            if not self._tripped:  # one line per episode
                self._tripped = True
                print(
                    f"offers: peer {self.peer} is over its quota of {self.daily} content reveals per day",
                    file=sys.stderr,
                    flush=True,
                )
            return float(max(1, int((day + 1) * 86400 - wall)))
        self._revealed |= new
        self._tripped = False
        return None

    def stats(self) -> dict:
        return {"per_day": self.daily, "today": len(self._revealed), "refused": self.refused}
