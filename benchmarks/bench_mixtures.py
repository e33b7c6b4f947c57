"""Benchmark the on-the-fly mixture sampler: mixtures per second, 1 and N processes.

    python benchmarks/bench_mixtures.py [--root data/corpus] [--count N] [--processes P] [--json OUT.json]

Needs a corpus (``samstream data build``). Each process draws its own indices from
one sampler, as DataLoader workers would. Reports the default training configuration
(1-3 interferers, EQ 50 %, room 30 %, span 50 %) and the dry two-source protocol.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np

from samstream.models.data.manifest import read_manifest
from samstream.models.data.mixtures import PROTOCOL, MixtureConfig, MixtureSampler

_SAMPLER: MixtureSampler | None = None


def _init(root: str, config: MixtureConfig) -> None:
    global _SAMPLER
    _SAMPLER = MixtureSampler(read_manifest(os.path.join(root, "manifest.jsonl")), root, config, seed=1)


def _draw(index: int) -> float:
    started = time.perf_counter()
    _SAMPLER[index]
    return time.perf_counter() - started


def measure(root: str, config: MixtureConfig, count: int, processes: int) -> dict[str, float]:
    indices = range(count)
    if processes == 1:
        _init(root, config)
        _draw(10_000_000)                                   # warm-up: imports, caches
        started = time.perf_counter()
        times = [_draw(i) for i in indices]
        wall = time.perf_counter() - started
    else:
        with multiprocessing.Pool(processes, initializer=_init, initargs=(root, config)) as pool:
            pool.map(_draw, range(10_000_000, 10_000_000 + processes))
            started = time.perf_counter()
            times = pool.map(_draw, indices, chunksize=4)
            wall = time.perf_counter() - started
    ms = np.asarray(times) * 1e3
    return {"processes": processes, "mixtures": count, "mixtures_per_s": round(count / wall, 2),
            "audio_seconds_per_s": round(count * config.seconds / wall, 1),
            "p50_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join("data", "corpus"))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.root, "manifest.jsonl")):
        print(f"bench_mixtures: no corpus at {args.root}: run `samstream data build` first", file=sys.stderr)
        return 1
    results = {}
    for name, config in (("train", MixtureConfig()), ("protocol", PROTOCOL)):
        for processes in sorted({1, args.processes}):
            row = measure(args.root, config, args.count, processes)
            results[f"{name}_p{processes}"] = row
            print(f"{name:9s} {processes} proc: {row['mixtures_per_s']:7.1f} mixtures/s "
                  f"({row['audio_seconds_per_s']:.0f} s of audio/s), p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
