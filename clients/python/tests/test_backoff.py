import random

import pytest

from agent_registry import Backoff
from agent_registry._backoff import jittered


def test_waits_stay_under_a_ceiling_that_doubles_to_the_cap():
    b = Backoff(0.1, 10.0, rng=random.Random(7))
    ceilings = []
    for _ in range(12):
        ceiling = b.ceiling()
        ceilings.append(ceiling)
        wait = b.next_wait()
        assert 0 <= wait <= ceiling
    assert ceilings[:4] == [0.1, 0.2, 0.4, 0.8]
    assert ceilings[-1] == 10.0 and max(ceilings) == 10.0


def test_reset_starts_again_from_the_base():
    b = Backoff(0.1, 10.0)
    for _ in range(20):
        b.next_wait()
    b.reset()
    assert b.ceiling() == 0.1


def test_full_jitter_spreads_over_the_whole_range():
    b = Backoff(1.0, 1.0, rng=random.Random(1))
    waits = [b.next_wait() for _ in range(2000)]
    assert min(waits) < 0.05 and max(waits) > 0.95


def test_the_interval_is_jittered_by_ten_percent():
    rng = random.Random(3)
    values = [jittered(10.0, rng) for _ in range(2000)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert min(values) < 9.1 and max(values) > 10.9


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        Backoff(0, 1)
