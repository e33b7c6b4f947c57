"""One prepared run of every GPU check, for a session of issue 7 that has a CUDA GPU.

Usage: python benchmarks/gpu_check.py --model DIR [--out DIR] [--seconds S] [--large]

Needs, on the GPU machine: this repository's venv with onnxruntime-gpu in place of
onnxruntime and numba-cuda[cu12] (`pip install samstream[gpu]`), and a serving folder with
the batched hop graph (`samstream export` writes it; `--model`). It writes into --out:

- environment.json: the GPU, the driver's view, ONNX Runtime's providers, versions;
- tests.txt: the CUDA kernel and device engine tests, run on the device itself (the same
  files the CPU machine runs under numba's CUDA simulator), here with ONNX Runtime's CUDA
  provider bound to device pointers, which the simulator cannot exercise;
- bench/ and bench_graph/: `samstream bench --live --device cuda` without and with CUDA
  graphs: per-hop p50/p99/max for one stream, and how many 48 kHz streams fit;
- with --large, bench_large/: the same for the untrained gpu-large preset (weights drawn at
  random: compute does not depend on their values).

Each step that fails is recorded and the next one still runs; the summary is printed last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment() -> dict:
    import numba
    import onnxruntime
    from numba import cuda

    from samstream.stream.gpu_engine import cuda_unavailable_reason
    facts = {"numba": numba.__version__, "onnxruntime": onnxruntime.__version__,
             "providers": onnxruntime.get_available_providers(), "cuda_unavailable_reason": cuda_unavailable_reason()}
    if cuda.is_available():
        device = cuda.get_current_device()
        facts["gpu"] = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        facts["compute_capability"] = list(device.compute_capability)
    return facts


def run_tests(out: Path) -> dict:
    files = ["tests/kernels/test_cuda_kernels.py", "tests/stream/test_gpu_engine.py"]
    on_the_device = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, env=on_the_device)
    (out / "tests.txt").write_text(result.stdout + result.stderr)
    lines = result.stdout.strip().splitlines()
    return {"returncode": result.returncode, "summary": lines[-1] if lines else result.stderr[-500:]}


def large_model(folder: Path) -> Path:
    from samstream.models.checkpoint import save_checkpoint
    from samstream.models.config import MODEL_PRESETS
    from samstream.models.export import export_model_dir
    from samstream.models.transformer import SeparationDiT
    save_checkpoint(SeparationDiT(MODEL_PRESETS["gpu-large"]), folder / "checkpoint")
    export_model_dir(folder / "checkpoint", folder / "serving", 1)
    return folder / "serving"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="serving folder with hop_N_batched.onnx")
    parser.add_argument("--out", default="bench_out/gpu_check")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per batch size")
    parser.add_argument("--large", action="store_true", help="also the gpu-large preset, random weights")
    arguments = parser.parse_args()
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    from samstream.plugin_host.bench_streams import run_stream_bench
    steps = {"environment": environment, "tests": lambda: run_tests(out)}
    for name, graph in (("bench", False), ("bench_graph", True)):
        steps[name] = lambda name=name, graph=graph: run_stream_bench(
            str(out / name), "cuda", 64, arguments.model, seconds=arguments.seconds, cuda_graph=graph)
    if arguments.large:
        steps["bench_large"] = lambda: run_stream_bench(str(out / "bench_large"), "cuda", 64,
                                                        str(large_model(Path(tempfile.mkdtemp()))),
                                                        seconds=arguments.seconds)
    summary = {}
    for name, step in steps.items():
        try:
            result = step()
            summary[name] = {key: result[key] for key in ("single_stream", "max_streams_that_fit",
                                                          "max_streams_by_median") if key in result} or result
        except Exception as error:  # record and go on: one failed check must not hide the others
            summary[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-2000:]}
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
