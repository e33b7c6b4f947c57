"""`samstream demo`: the bundled example through the real streaming engine.

Until the separation model lands, the engine's spectral model is the identity, so what
the demo shows is the streaming machinery itself: the STFT round trip, the block
scheduler under host blocks of fixed and changing size, and that the latency the engine
reports is the latency an impulse and the example actually see.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samstream.stream.engine import StftEngine
from samstream.stream.offline import fixed_blocks, measure_delay, random_blocks, render_streamed
from samstream.stream.scheduler import BlockScheduler

from .audio_files import AudioFileError, read_audio, write_audio

EXAMPLE_NAME = "examples/speech_hum.flac"
IMPULSE_AT = 1000


def default_example() -> Path:
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = root / EXAMPLE_NAME
        if candidate.exists():
            return candidate
    raise AudioFileError(f"{EXAMPLE_NAME}: not found; pass --input FILE")


@dataclass(frozen=True)
class DemoRun:
    host_blocks: str
    reported_samples: int
    impulse_samples: int
    correlation_samples: int
    max_error: float
    real_time_factor: float
    output: np.ndarray


def impulse_delay(scheduler: BlockScheduler, blocks, sample_rate: int) -> int:
    scheduler.configure(sample_rate, scheduler.max_block, scheduler.channels)
    probe = np.zeros((scheduler.channels, IMPULSE_AT + 4 * scheduler.latency_samples + 4096), np.float32)
    probe[:, IMPULSE_AT] = 1.0
    response = render_streamed(scheduler, probe, blocks)
    return int(np.argmax(np.abs(response[0]))) - IMPULSE_AT


def run_case(signal: np.ndarray, sample_rate: int, label: str, host_block, blocks, max_block: int) -> DemoRun:
    engine = StftEngine(n_fft=512, hop=128)
    scheduler = BlockScheduler(engine, host_block=host_block)
    scheduler.configure(sample_rate, max_block, signal.shape[0])
    impulse = impulse_delay(scheduler, blocks, sample_rate)
    scheduler.configure(sample_rate, max_block, signal.shape[0])
    started = time.perf_counter()
    output = render_streamed(scheduler, signal, blocks)
    elapsed = time.perf_counter() - started
    reported = scheduler.latency_samples
    correlation = measure_delay(signal[0], output[0], max_delay=sample_rate)
    aligned_error = np.abs(output[:, reported:] - signal[:, :signal.shape[1] - reported]).max()
    return DemoRun(label, reported, impulse, correlation, float(aligned_error),
                   elapsed / (signal.shape[1] / sample_rate), output)


def run_demo(input_path: str | None, out_dir: str) -> list[DemoRun]:
    path = Path(input_path) if input_path else default_example()
    signal, sample_rate = read_audio(path)
    channels, length = signal.shape
    print(f"samstream demo: {path} ({length / sample_rate:.2f} s, {sample_rate} Hz, {channels} channel(s))")
    print("engine: streaming STFT 512/128 -> pass-through model -> ISTFT, through the block scheduler")
    cases = [
        ("128 fixed (JACK period)", 128, fixed_blocks(128), 128),
        ("441 fixed", 441, fixed_blocks(441), 441),
        ("32..1024, changing", None, random_blocks(32, 1024, seed=7), 1024),
    ]
    runs = [run_case(signal, sample_rate, label, host_block, blocks, max_block)
            for label, host_block, blocks, max_block in cases]
    header = f"{'host blocks':<26}{'reported':>18}{'impulse':>10}{'xcorr':>8}{'max error':>12}{'RTF':>8}"
    print(header)
    for run in runs:
        reported = f"{run.reported_samples} ({1000 * run.reported_samples / sample_rate:.2f} ms)"
        print(f"{run.host_blocks:<26}{reported:>18}{run.impulse_samples:>10}{run.correlation_samples:>8}"
              f"{run.max_error:>12.1e}{run.real_time_factor:>8.3f}")
    agree = all(run.reported_samples == run.impulse_samples == run.correlation_samples for run in runs)
    print("reported latency = measured latency: " + ("yes, for every host block pattern" if agree else "NO"))
    output_path = Path(out_dir) / "output.wav"
    write_audio(output_path, runs[0].output, sample_rate)
    print(f"wrote {output_path} (the stream as heard, delayed by {runs[0].reported_samples} samples)")
    if not agree:
        raise SystemExit("samstream demo: reported and measured latency differ")
    return runs
