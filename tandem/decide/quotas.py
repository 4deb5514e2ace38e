"""What one peer may ask the bank's decision service for: a quota per second and per day, and one fresh
evaluation per link id per window (docs/privacy.md, "Online decisions").

``Window``: a link id evaluated within ``seconds`` is answered from that evaluation (its PD zone and grid
limit, already disclosed), whatever the new request's bits, amount or model version say, so a partner
cannot vary its own inputs to write more equations in the bank's features. In memory, O(1) per request,
bounded: an entry leaves once its window has passed. ``PeerQuota``: a token bucket of ``rate`` requests
per second (one second's burst) and ``daily`` requests per UTC day; a trip is counted and logged once.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from typing import NamedTuple

from tandem.decide.policy import Outcome


class Evaluation(NamedTuple):
    """A fresh evaluation of one link id: the exact and grid limit, the PD's zone, the reasons (JSON
    text), the PD, its band, the model version; ``expires``: epoch seconds. The window holds these as
    plain tuples of atoms, which the garbage collector stops tracking (full passes over many tracked
    objects stall the service)."""

    limit: float
    offered: float
    zone: str
    reasons: str
    pd: float
    band: str
    model_version: str
    expires: float

    @property
    def outcome(self) -> Outcome:
        return Outcome("", self.limit, [], json.loads(self.reasons), self.offered, self.zone)


class Window:
    """``(kind, link_id)`` -> the evaluation made within the last ``seconds`` (0: no window)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._by_key: dict[tuple[str, str], tuple] = {}  # Evaluation's fields
        self._order: deque[tuple[float, tuple[str, str]]] = deque()  # (expires, key), oldest first
        self.hits = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: tuple[str, str], now: float | None = None) -> Evaluation | None:
        now = time.time() if now is None else now
        self._expire(now)
        found = self._by_key.get(key)
        if found is None:
            return None
        self.hits += 1
        return Evaluation(*found)

    def put(self, key: tuple[str, str], outcome: Outcome, pd: float, band: str, version: str, at: float) -> None:
        """Record an evaluation made at ``at`` (epoch seconds)."""
        if self.seconds <= 0 or at + self.seconds <= time.time():
            return
        expires = at + self.seconds
        o = outcome
        self._by_key[key] = (o.limit, o.offered, o.zone, json.dumps(o.reasons), pd, band, version, expires)
        self._order.append((expires, key))

    def _expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            expires, key = order.popleft()
            held = self._by_key.get(key)
            if held is not None and held[-1] <= now:
                del self._by_key[key]


class PeerQuota:
    """Decision requests of the mutual-TLS peer: ``rate`` per second (0: none) and ``daily`` per UTC
    day (0: none). ``admit()`` -> ``None`` (go ahead) or ``(which, seconds to wait)``."""

    def __init__(self, peer: str, rate: float, daily: int):
        self.peer, self.rate, self.daily = peer, rate, daily
        self.refused = {"per_second": 0, "per_day": 0}
        self._tokens, self._at = rate, -1.0  # tokens, and when they were counted (monotonic s; -1: never)
        self._day, self._today = -1, 0
        self._tripped = False

    def admit(self, now: float | None = None, wall: float | None = None) -> tuple[str, float] | None:
        wall = time.time() if wall is None else wall
        day = int(wall // 86400)
        if day != self._day:
            self._day, self._today = day, 0
        if self.daily and self._today >= self.daily:
            return self._refuse("per_day", (day + 1) * 86400 - wall)
        if self.rate > 0:
            now = time.monotonic() if now is None else now
            at = now if self._at < 0 else self._at
            self._tokens = min(self.rate, self._tokens + (now - at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return self._refuse("per_second", (1 - self._tokens) / self.rate)
            self._tokens -= 1
        self._today += 1
        self._tripped = False
        return None

    def _refuse(self, which: str, wait: float) -> tuple[str, float]:
        self.refused[which] += 1
        if not self._tripped:  # one line per episode, not one per refused request
            self._tripped = True
            limit = f"{self.rate:g} per second" if which == "per_second" else f"{self.daily} per day"
            line = f"decide: peer {self.peer} is over its quota of {limit} decision requests"
            print(line, file=sys.stderr, flush=True)
        return which, max(1.0, math.ceil(wait))

    def stats(self) -> dict:
        return {"per_second": self.rate, "per_day": self.daily, "today": self._today, "refused": dict(self.refused)}
