"""Benchmark the text prompt encoder: load time, ms per sentence (cold, cached), fp32 vs int8.

    python benchmarks/bench_text_encoder.py [--dir DIR] [--repeat N] [--json OUT.json]

Uses the export in DIR (default: ``default_text_encoder_dir()``); export it first with
``python -m samstream.models.text_export``. Runs without torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from samstream.models.text_encoder import ModelFileError, TextEncoder, default_text_encoder_dir, read_config
from samstream.models.text_export import EVAL_PHRASES


def _ms(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.median(values)), 4), "p95_ms": round(float(np.percentile(values, 95)), 4),
            "max_ms": round(float(values.max()), 4)}


def bench_variant(directory: Path, variant: str, threads: int, repeat: int) -> dict[str, object]:
    started = time.perf_counter()
    encoder = TextEncoder.load(directory, variant=variant, threads=threads)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    TextEncoder.load(directory, variant=variant, threads=threads, verify=False)
    load_unverified_s = time.perf_counter() - started

    phrases = list(EVAL_PHRASES)
    cold = []
    for _ in range(repeat):
        encoder.clear_cache()
        for phrase in phrases:
            started = time.perf_counter()
            encoder.encode(phrase)
            cold.append(time.perf_counter() - started)
    cached = []
    for _ in range(repeat):
        for phrase in phrases:
            started = time.perf_counter()
            encoder.encode(phrase)
            cached.append(time.perf_counter() - started)
    long_text = "crowd noise and applause " * 200  # truncated to max_tokens
    long_runs = []
    for _ in range(max(3, repeat)):
        encoder.clear_cache()
        started = time.perf_counter()
        encoder.encode(long_text)
        long_runs.append(time.perf_counter() - started)
    tokenize = []
    for phrase in phrases:
        started = time.perf_counter()
        encoder._tokenizer.encode(phrase)
        tokenize.append(time.perf_counter() - started)
    return {
        "variant": variant, "threads": threads, "load_s": round(load_s, 3),
        "load_unverified_s": round(load_unverified_s, 3),
        "cold": _ms(cold), "cached": _ms(cached),
        f"cold_{encoder.token_count(long_text)}_tokens": _ms(long_runs), "tokenize_only": _ms(tokenize),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="exported encoder folder")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the 50 phrases")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    directory = args.dir or default_text_encoder_dir()
    try:
        config = read_config(directory)
    except ModelFileError as error:
        print(f"bench_text_encoder: {error}", file=sys.stderr)
        return 1
    variants = ["fp32"] + (["int8"] if "int8" in config["files"] else [])
    results = {"dir": str(directory), "sizes_mb": {key: round(entry["bytes"] / 1e6, 2)
                                                   for key, entry in config["files"].items()},
               "int8": config["int8"], "runs": []}
    for variant in variants:
        for threads in (1, 2):
            row = bench_variant(directory, variant, threads, args.repeat)
            results["runs"].append(row)
            long_key = next(key for key in row if key.startswith("cold_") and key.endswith("_tokens"))
            print(f"{variant:5s} threads={threads}  load {row['load_s']:.2f} s "
                  f"(unverified {row['load_unverified_s']:.2f} s)  cold p50 {row['cold']['p50_ms']:.2f} ms "
                  f"p95 {row['cold']['p95_ms']:.2f} ms  cached p50 {row['cached']['p50_ms'] * 1e3:.1f} us  "
                  f"{long_key} p50 {row[long_key]['p50_ms']:.1f} ms  "
                  f"tokenize p50 {row['tokenize_only']['p50_ms'] * 1e3:.0f} us")
    print("sizes (MB):", results["sizes_mb"], " int8:", {key: config["int8"].get(key)
                                                          for key in ("made", "cosine_min", "cosine_mean")})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
