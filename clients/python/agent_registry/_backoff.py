"""Full-jitter exponential back-off, and the jittered heartbeat interval."""

from __future__ import annotations

import random


class Backoff:
    """Waits drawn uniformly from [0, min(cap, base * 2**attempt)] (full jitter)."""

    def __init__(self, base: float = 0.1, cap: float = 10.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base, self.cap = base, cap
        self._attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest wait the next call may return."""
        return min(self.cap, self.base * (2 ** min(self._attempt, 62)))

    def next_wait(self) -> float:
        wait = self._rng.uniform(0, self.ceiling())
        self._attempt += 1
        return wait

    def reset(self) -> None:
        self._attempt = 0


def jittered(interval: float, rng: random.Random | None = None) -> float:
    """The advised heartbeat interval, ±10 %."""
    return interval * (rng or random).uniform(0.9, 1.1)
