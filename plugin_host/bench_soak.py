"""`samstream bench --live --soak SECONDS [--load N]`: misses over a long run of `serve` as shipped.

`samstream serve --backend jack` runs with its own defaults (plus whatever
``--serve-options`` adds) on a JACK dummy server at 48 kHz, 128-frame periods, with a
text prompt, so the model runs every hop. A JACK client plays the bundled example into
every input. ``--load N`` starts N busy processes beside it (the machine's other work).
Every ``WINDOW_SECONDS`` the bridge's counters are read: misses, xruns and the per-hop
compute percentiles of the hops since the last read. The report gives misses per minute
(mean and worst minute), xruns, and p50 / p99 / p99.9 / max of the hop compute.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .audio_files import read_audio
from .bench_live import EXAMPLE, Player, start_serve_on_jack
from .jack_server import PERIOD, RATE

WINDOW_SECONDS = 20.0  # shorter than the ~44 s of hop times the bridge keeps for its percentiles
WARMUP_SECONDS = 5.0
BUSY_LOOP = "while True: pass"


def start_load(processes: int) -> list[subprocess.Popen]:
    """``processes`` busy loops at normal priority: a core each, as a second job on the machine would take."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(processes)]


def per_minute(timeline: list[tuple[float, int]]) -> list[int]:
    """Misses in each whole minute, from (seconds since start, misses so far) readings."""
    minutes = []
    for start in np.arange(0.0, timeline[-1][0] - 59.0, 60.0):
        inside = [count for at, count in timeline if start <= at <= start + 60.0 + 1e-6]
        minutes.append(inside[-1] - inside[0])
    return minutes


def run_soak_bench(out_dir: str, seconds: float, load: int = 0, serve_options: str = "",
                   text: str = "speech") -> dict:
    if seconds < 2 * WINDOW_SECONDS:
        raise ValueError(f"--soak must be at least {2 * WINDOW_SECONDS:g} seconds, got {seconds:g}")
    if load < 0:
        raise ValueError(f"--load must be 0 or more busy processes, got {load}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mono = read_audio(EXAMPLE)[0].mean(axis=0).astype(np.float32)
    with ExitStack() as stack:
        serve, osc = start_serve_on_jack(stack, ["--text", text, *shlex.split(serve_options)], "soak")
        first = osc.status()
        player = Player(mono, 1.0)
        player.activate(inputs=first["channels"])
        stack.callback(player.close)
        busy = start_load(load)
        stack.callback(lambda: [process.kill() for process in busy])
        time.sleep(WARMUP_SECONDS)
        baseline = osc.status()
        started = time.monotonic()
        timeline, windows = [(0.0, 0)], []
        while time.monotonic() - started < seconds:
            time.sleep(min(WINDOW_SECONDS, seconds - (time.monotonic() - started)))
            reading = osc.status()
            timeline.append((time.monotonic() - started, reading["misses"] - baseline["misses"]))
            windows.append(reading)
        final = windows[-1]
        serve.terminate()
        serve.communicate(timeout=30)
    minutes = per_minute(timeline) or [timeline[-1][1]]
    elapsed = timeline[-1][0]
    misses = final["misses"] - baseline["misses"]
    results = {
        "seconds": round(elapsed, 1), "load": load, "serve_options": serve_options, "text": text,
        "channels": first["channels"], "sample_rate": RATE, "period": PERIOD,
        "latency_samples": first["latency_samples"], "safety_samples": first["safety_samples"],
        "worker_realtime": bool(first["worker_realtime"]), "judge": first.get("judge_ms") not in (None, "none"),
        "hops": final["hops"] - baseline["hops"], "misses": misses,
        "misses_per_minute": round(60.0 * misses / elapsed, 2), "worst_minute_misses": max(minutes),
        "xruns": final["xruns"] - baseline["xruns"],
        "hop_ms_p50": float(np.median([window["hop_ms_p50"] for window in windows])),
        "hop_ms_p99_worst": max(window["hop_ms_p99"] for window in windows),
        "hop_ms_p999_worst": max(window["hop_ms_p999"] for window in windows),
        "hop_ms_max": final["hop_ms_max"],
        "hop_ms": 1000.0 * 256 / RATE,
        "load_average": os.getloadavg()[0],
        # (seconds, misses so far, xruns so far, hop p99.9 of the window): where the misses fell.
        "timeline": [[round(at, 1), count, window["xruns"] - baseline["xruns"], window["hop_ms_p999"]]
                     for (at, count), window in zip(timeline[1:], windows, strict=True)],
    }
    (out / "soak_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "soak_report.md").write_text(render_soak_report(results))
    print(render_soak_report(results))
    return results


def render_soak_report(results: dict) -> str:
    return "\n".join([
        "# samstream live soak",
        "",
        f"`serve --backend jack {results['serve_options']}` on a JACK dummy server ({results['sample_rate']} Hz, "
        f"period {results['period']}), {results['channels']} channel(s), text prompt {results['text']!r}, "
        f"{results['seconds']:g} s, {results['load']} busy process(es) beside it "
        f"(load average at the end {results['load_average']:.1f}).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| latency (safety buffer) | {results['latency_samples']} samples ({results['safety_samples']}) |",
        f"| misses | {results['misses']} in {results['hops']} hops: {results['misses_per_minute']} a minute, "
        f"worst minute {results['worst_minute_misses']} |",
        f"| xruns | {results['xruns']} |",
        f"| hop compute p50 / worst-window p99 / p99.9 / max | {results['hop_ms_p50']:.2f} / "
        f"{results['hop_ms_p99_worst']:.2f} / {results['hop_ms_p999_worst']:.2f} / {results['hop_ms_max']:.2f} ms "
        f"(a hop is {results['hop_ms']:.2f} ms) |",
        f"| worker real-time priority, live judge | {results['worker_realtime']}, {results['judge']} |",
        "",
    ])
