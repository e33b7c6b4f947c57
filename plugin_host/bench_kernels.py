"""`samstream bench --kernels`: what one 128-sample block costs in each implementation.

Every case runs in the same process, one after another, on the same input, so the
ratios compare like with like on a shared and noisy machine. Times are per call, taken
one call at a time; the report gives the median and the 99th percentile.
"""
from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from samstream.kernels.stft import analysis_window, synthesis_window
from samstream.stream.engine import StftEngine
from samstream.stream.ring import RingBuffer

BLOCK = 128
N_FFT = 512
SAMPLE_RATE = 48000


class NumpyHopRoundTrip:
    """STFT -> ISTFT one hop at a time with numpy's FFT: the plain-Python baseline."""

    def __init__(self, n_fft: int, hop: int):
        self.hop = hop
        self.window = analysis_window(n_fft, np.float32)
        self.synthesis = synthesis_window(n_fft, hop, np.float32)
        self.frame = np.zeros(n_fft, np.float32)
        self.overlap = np.zeros(n_fft, np.float32)

    def process(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        hop = self.hop
        self.frame[:-hop] = self.frame[hop:]
        self.frame[-hop:] = hop_in
        self.overlap += np.fft.irfft(np.fft.rfft(self.frame * self.window)) * self.synthesis
        hop_out[:] = self.overlap[:hop]
        self.overlap[:-hop] = self.overlap[hop:]
        self.overlap[-hop:] = 0


class NumpySliceRing:
    """A ring that copies with numpy slices: the baseline for the numba ring kernels."""

    def __init__(self, capacity: int):
        self.buffer = np.zeros(capacity, np.float32)
        self.written = 0
        self.read_count = 0

    def write(self, block: np.ndarray) -> None:
        capacity = len(self.buffer)
        start = self.written % capacity
        first = min(len(block), capacity - start)
        self.buffer[start:start + first] = block[:first]
        self.buffer[:len(block) - first] = block[first:]
        self.written += len(block)

    def read(self, block: np.ndarray) -> None:
        capacity = len(self.buffer)
        start = self.read_count % capacity
        first = min(len(block), capacity - start)
        block[:first] = self.buffer[start:start + first]
        block[first:] = self.buffer[:len(block) - first]
        self.read_count += len(block)


def time_calls(call: Callable[[], None], seconds: float, warm_up: int = 200) -> dict:
    for _ in range(warm_up):
        call()
    clock = time.perf_counter_ns
    samples = []
    deadline = clock() + int(seconds * 1e9)
    while clock() < deadline:
        for _ in range(100):
            started = clock()
            call()
            samples.append(clock() - started)
    micros = np.asarray(samples) / 1000.0
    return {"p50_us": float(np.median(micros)), "p99_us": float(np.percentile(micros, 99)),
            "mean_us": float(micros.mean()), "calls": len(micros)}


def stft_cases(signal: np.ndarray) -> dict[str, Callable[[], None]]:
    """One call = one 128-sample block through STFT -> ISTFT, streaming from ``signal``."""
    blocks = signal.reshape(-1, 1, BLOCK)
    position = [0]

    def next_block() -> np.ndarray:
        position[0] = (position[0] + 1) % len(blocks)
        return blocks[position[0]]

    engine = StftEngine(n_fft=N_FFT, hop=BLOCK)
    engine.configure(SAMPLE_RATE, BLOCK, 1)
    engine_out = np.zeros((1, BLOCK), np.float32)
    numpy_path = NumpyHopRoundTrip(N_FFT, BLOCK)
    numpy_out = np.zeros(BLOCK, np.float32)
    cases = {
        "stft_istft/numba": lambda: engine.process(next_block(), engine_out),
        "stft_istft/numpy_per_hop": lambda: numpy_path.process(next_block()[0], numpy_out),
    }
    try:
        # The training half holds the torch path; the serving path never imports it.
        import samstream.models.torch_dsp as torch_dsp
    except ImportError:
        return cases
    torch = torch_dsp.torch
    torch.set_num_threads(1)
    torch_path = torch_dsp.HopRoundTrip(N_FFT, BLOCK)
    torch_out = torch.zeros(BLOCK)
    torch_blocks = torch.from_numpy(blocks[:, 0].copy())
    second = torch.from_numpy(signal[:SAMPLE_RATE].copy())

    def torch_hop() -> None:
        position[0] = (position[0] + 1) % len(blocks)
        torch_path.process(torch_blocks[position[0]], torch_out)

    def torch_whole_second() -> None:
        with torch.inference_mode():
            torch_dsp.istft(torch_dsp.stft(second, N_FFT, BLOCK), N_FFT, BLOCK, SAMPLE_RATE)

    cases["stft_istft/torch_per_hop"] = torch_hop
    # Not streamable: one call transforms a whole second; reported per block for scale.
    cases["stft_istft/torch_whole_second"] = torch_whole_second
    return cases


def ring_cases(signal: np.ndarray) -> dict[str, Callable[[], None]]:
    """One call = write one 128-sample block and read one back."""
    block_in = signal[:BLOCK].reshape(1, BLOCK).copy()
    block_out = np.zeros_like(block_in)
    numba_ring = RingBuffer(1, 4096)
    numpy_ring = NumpySliceRing(4096)

    def numba_round() -> None:
        numba_ring.write(block_in)
        numba_ring.read(block_out)

    def numpy_round() -> None:
        numpy_ring.write(block_in[0])
        numpy_ring.read(block_out[0])

    return {"ring/numba": numba_round, "ring/numpy_slices": numpy_round}


def run_kernel_bench(out_dir: str, seconds: float) -> dict:
    signal = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
    cases = {**stft_cases(signal), **ring_cases(signal)}
    results = {}
    for name, call in cases.items():
        results[name] = time_calls(call, seconds)
    results["stft_istft/torch_whole_second"] = per_block(results.get("stft_istft/torch_whole_second"))
    ratios = {
        "numpy_per_hop / numba (stft_istft)": ratio(results, "stft_istft/numpy_per_hop", "stft_istft/numba"),
        "torch_per_hop / numba (stft_istft)": ratio(results, "stft_istft/torch_per_hop", "stft_istft/numba"),
        "torch_whole_second / numba (stft_istft)": ratio(results, "stft_istft/torch_whole_second",
                                                         "stft_istft/numba"),
        "numpy_slices / numba (ring)": ratio(results, "ring/numpy_slices", "ring/numba"),
    }
    report = {"block": BLOCK, "n_fft": N_FFT, "sample_rate": SAMPLE_RATE,
              "block_budget_us": 1e6 * BLOCK / SAMPLE_RATE, "machine": platform.platform(),
              "results": {key: value for key, value in results.items() if value is not None},
              "ratios_p50": {key: value for key, value in ratios.items() if value is not None}}
    write_report(Path(out_dir), report)
    return report


def per_block(result: dict | None) -> dict | None:
    if result is None:
        return None
    blocks_per_call = SAMPLE_RATE / BLOCK
    return {key: (value / blocks_per_call if key.endswith("_us") else value) for key, value in result.items()}


def ratio(results: dict, slower: str, faster: str) -> float | None:
    if results.get(slower) is None or results.get(faster) is None:
        return None
    return results[slower]["p50_us"] / results[faster]["p50_us"]


def write_report(out_dir: Path, report: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Kernel benchmark",
        "",
        f"One block = {report['block']} samples at {report['sample_rate']} Hz "
        f"({report['block_budget_us']:.0f} us of audio); STFT {report['n_fft']}/{report['block']}, mono.",
        f"Machine: {report['machine']}.",
        "",
        "| case | p50 us/block | p99 us/block | calls |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in report["results"].items():
        lines.append(f"| {name} | {figures['p50_us']:.2f} | {figures['p99_us']:.2f} | {figures['calls']} |")
    lines += ["", "| ratio (median per block) | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f}x |" for name, value in report["ratios_p50"].items()]
    lines += ["", "torch_whole_second transforms one second per call and is divided by the blocks in it:",
              "an offline figure for scale, not a streaming path."]
    text = "\n".join(lines) + "\n"
    (out_dir / "report.md").write_text(text)
    print(text, end="")
    print(f"wrote {out_dir / 'report.md'} and {out_dir / 'results.json'}")
