"""Per-hop compute, timed the way the live worker runs it.

The live worker raises itself to real-time (FIFO) scheduling (``stream.live``), so on a
busy machine other processes wait while it computes a hop. A benchmark that times hops
at normal priority measures the machine's other load as much as the model: on these
shared two-core machines a training run beside it turned a 2.6 ms median into a 7-8 ms
p99. ``time_hops`` runs the loop on a thread with the worker's own scheduling and
records both clocks: wall time (what the deadline sees) and the thread's CPU time (the
compute alone, whatever the scheduler did).

With ``pace_ms`` the hops start one period apart, as the live worker's do (it waits for
each hop's input). Back to back, a real-time thread meets the kernel's real-time
throttling (by default 950 ms of every second), which stalls it ~50 ms once a second: a
stall of the benchmark, not of a stream.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .live import raise_priority


@dataclass(frozen=True)
class HopTimes:
    wall_ms: np.ndarray  # (hops,) wall-clock milliseconds per hop
    cpu_ms: np.ndarray  # (hops,) the timing thread's CPU milliseconds per hop
    realtime: bool  # whether the thread got the live worker's real-time scheduling

    def figures(self, budget_ms: float | None = None) -> dict:
        """p50/p99/max/mean of both clocks; with ``budget_ms``, how many hops overran it (wall)."""
        summary = {"hops": int(self.wall_ms.size), "realtime": self.realtime}
        for clock, values in (("", self.wall_ms), ("cpu_", self.cpu_ms)):
            summary |= {f"{clock}p50": round(float(np.median(values)), 4),
                        f"{clock}p99": round(float(np.percentile(values, 99)), 4),
                        f"{clock}max": round(float(values.max()), 4)}
        summary["mean"] = round(float(self.wall_ms.mean()), 4)
        if budget_ms is not None:
            summary |= {"budget_ms": round(budget_ms, 4), "over_budget": int((self.wall_ms > budget_ms).sum())}
        return summary


def time_hops(process_hop: Callable[[int], object], hops: int, warm_up: int = 0, realtime: bool = True,
              keep_going: Callable[[int], bool] | None = None, pace_ms: float | None = None) -> HopTimes:
    """Call ``process_hop(index)`` for ``warm_up + hops`` hops on a worker-like thread; time the last ``hops``.

    ``keep_going(timed_so_far)``, when given, is asked after the first ``hops`` timed hops
    whether to time more (a benchmark that runs for a set number of seconds).
    """
    wall, cpu = [], []
    outcome: dict = {"realtime": False, "error": None}

    def run() -> None:
        outcome["realtime"] = realtime and raise_priority()
        try:
            index = 0
            origin = time.perf_counter()
            while index < warm_up + hops or (keep_going is not None and keep_going(len(wall))):
                if index == warm_up:  # the grid starts again after the warm-up, however long its first calls took
                    origin = time.perf_counter() - index * (pace_ms or 0.0) / 1e3
                # The grid stays fixed, as a stream's input arrives: after a late hop the next starts at once.
                wait = origin + index * pace_ms / 1e3 - time.perf_counter() if pace_ms is not None else 0.0
                if wait > 0:
                    time.sleep(wait)
                wall_start, cpu_start = time.perf_counter(), time.thread_time()
                process_hop(index)
                if index >= warm_up:
                    cpu.append(time.thread_time() - cpu_start)
                    wall.append(time.perf_counter() - wall_start)
                index += 1
        except BaseException as error:  # re-raised on the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="samstream-hop-clock")
    thread.start()
    thread.join()
    if outcome["error"] is not None:
        raise outcome["error"]
    return HopTimes(np.array(wall) * 1e3, np.array(cpu) * 1e3, outcome["realtime"])
