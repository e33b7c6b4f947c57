"""Misses a minute over the last minute of stream, as /sam/status and the page show them."""
import threading

import pytest

from samstream.stream.live import RecentRate


def test_the_rate_counts_the_last_minute_and_forgets_older_misses():
    rate = RecentRate(window_s=60.0)
    assert rate.per_minute(0.5, 2) == 2.0  # a start-up burst counts over a whole minute, not extrapolated
    assert rate.per_minute(30.0, 2) == 2.0
    assert rate.per_minute(61.0, 5) == pytest.approx(60.0 * 5 / 61.0)
    assert rate.per_minute(95.0, 5) == pytest.approx(60.0 * 3 / 65.0)  # the misses before 30 s are gone
    assert rate.per_minute(200.0, 5) == 0.0  # none for over a minute: the warning goes away
    # Read rarely, the window reaches back to the newest reading at least a minute old (95 s).
    assert rate.per_minute(200.5, 11) == pytest.approx(60.0 * 6 / 105.5)


def test_many_readers_keep_the_readings_bounded():
    rate = RecentRate(window_s=60.0)

    def read(offset: float) -> None:
        for second in range(0, 3600):
            rate.per_minute(second + offset, second // 10)

    readers = [threading.Thread(target=read, args=(k / 4,)) for k in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len(rate._readings) <= 62
    assert rate.per_minute(3600.0, 360) == pytest.approx(6.0, abs=0.2)  # one miss every 10 s
