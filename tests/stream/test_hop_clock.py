"""The hop clock: the worker's scheduling, both clocks, warm-up left out, errors brought back."""
import os
import time

import numpy as np
import pytest

from samstream.stream.hop_clock import time_hops


def test_times_the_hops_after_the_warm_up_on_both_clocks():
    seen = []

    def hop(index):
        seen.append(index)
        if index < 3:
            time.sleep(0.05)  # warm-up hops are slow and must not count
        else:
            time.sleep(0.002)  # waiting costs wall time, not CPU time

    times = time_hops(hop, 20, warm_up=3)
    assert seen == list(range(23))
    assert times.wall_ms.shape == times.cpu_ms.shape == (20,)
    assert times.wall_ms.min() >= 2.0 and times.wall_ms.max() < 50.0
    assert np.median(times.cpu_ms) < 1.0
    figures = times.figures(budget_ms=1.0)
    assert figures["hops"] == 20 and figures["over_budget"] == 20
    assert figures["cpu_p50"] <= figures["cpu_p99"] <= figures["cpu_max"] < figures["p50"]


def test_runs_at_the_live_workers_real_time_priority_where_the_system_allows_it():
    policies = []
    times = time_hops(lambda index: policies.append(os.sched_getscheduler(0)), 5)
    assert times.realtime == (policies[0] == os.SCHED_FIFO)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's own thread is untouched
    if os.geteuid() == 0:
        assert times.realtime
    normal = time_hops(lambda index: policies.append(os.sched_getscheduler(0)), 1, realtime=False)
    assert not normal.realtime and policies[-1] == os.SCHED_OTHER


def test_keeps_going_while_asked_and_re_raises_a_hops_error():
    times = time_hops(lambda index: None, 4, keep_going=lambda timed: timed < 10)
    assert times.wall_ms.size == 10

    def failing(index):
        if index == 2:
            raise ValueError("bad hop")

    with pytest.raises(ValueError, match="bad hop"):
        time_hops(failing, 5)


def test_paced_hops_start_one_period_apart_as_a_streams_input_arrives():
    starts = []
    started = time.perf_counter()
    time_hops(lambda index: starts.append(time.perf_counter()), 10, pace_ms=20.0)
    gaps = np.diff(starts) * 1e3
    assert gaps.min() > 15.0 and time.perf_counter() - started >= 0.18


def test_a_slow_warm_up_does_not_leave_the_timed_hops_catching_up_back_to_back():
    starts = []

    def hop(index):
        if index < 2:
            time.sleep(0.1)  # first calls that plan memory, five periods each
        else:
            starts.append(time.perf_counter())

    time_hops(hop, 6, warm_up=2, pace_ms=20.0)
    assert np.diff(starts).min() * 1e3 > 15.0
