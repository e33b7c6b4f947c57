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
    if sample_rate == 48000 and channels == 1 and path.with_suffix(".json").exists():
        model_demo(signal, sample_rate, Path(out_dir), path)
    return runs


def timed(separator):
    """Wrap the separator's per-hop call to record how long each takes (the demo's meter)."""
    timings: list[float] = []
    process = separator.process

    def measured(spectrum_in, spectrum_out):
        started = time.perf_counter()
        process(spectrum_in, spectrum_out)
        timings.append(time.perf_counter() - started)

    separator.process = measured
    return timings


def model_demo(signal: np.ndarray, sample_rate: int, out_dir: Path, example: Path) -> None:
    """Separate the example with text prompts through the live path; score against its sources."""
    import json

    from samstream.models.metrics import si_sdr
    from samstream.models.runtime import OnnxSeparator, Prompt
    from samstream.models.separate import DEFAULT_MODEL_DIR
    from samstream.models.text_encoder import TextEncoder

    if not (DEFAULT_MODEL_DIR / "serving.json").exists():
        print(f"no bundled model in {DEFAULT_MODEL_DIR}: separation demo skipped")
        return
    sources = example.with_suffix(".sources")
    references = {path.stem: read_audio(path)[0][0] for path in sources.glob("*.flac")}
    prompts = json.loads(example.with_suffix(".json").read_text()).get("prompts", {})
    encoder = TextEncoder.load()
    print(f"\nseparation with the bundled model ({DEFAULT_MODEL_DIR}), live path, host blocks of 128:")
    print(f"{'prompt':<16}{'steps':>6}{'SI-SDRi extract':>17}{'SI-SDRi remove':>16}{'hop p50 ms':>12}{'p99 ms':>8}")
    for source, texts in prompts.items():
        reference = references.get(source)
        if reference is None:
            continue
        text = texts[0]
        for steps in (1, 2):
            separator = OnnxSeparator(DEFAULT_MODEL_DIR, steps=steps)
            separator.set_prompt(Prompt(text_embedding=encoder.encode(text)))
            config = separator.config
            scheduler = BlockScheduler(StftEngine(config.stft.n_fft, config.stft.hop, model=separator), host_block=128)
            scheduler.configure(sample_rate, 128, 1)
            timings = timed(separator)
            output = render_streamed(scheduler, signal, fixed_blocks(128))
            latency = scheduler.latency_samples
            estimate = output[0, latency:]
            mixture = signal[0, :len(estimate)]
            wanted, rest = reference[:len(estimate)], mixture - reference[:len(estimate)]
            extract = si_sdr(estimate, wanted) - si_sdr(mixture, wanted)
            remove = si_sdr(mixture - estimate, rest) - si_sdr(mixture, rest)
            milliseconds = np.array(timings[50:]) * 1e3
            print(f"{text!r:<16}{steps:>6}{extract:>+16.2f} {remove:>+15.2f} {np.median(milliseconds):>11.2f}"
                  f"{np.percentile(milliseconds, 99):>8.2f}")
            if steps == 1:
                aligned = np.zeros_like(signal)
                aligned[0, :len(estimate)] = estimate
                write_audio(out_dir / f"{source}_target.wav", aligned, sample_rate)
                write_audio(out_dir / f"{source}_residual.wav", signal - aligned, sample_rate)
    print("(hop times as the file rendered, faster than real time at normal priority; "
          "`samstream bench --live --device cpu` times hops as the live worker runs them)")
    # With the prompt cleared the model keeps running and the audio passes: an impulse shows the delay.
    separator = OnnxSeparator(DEFAULT_MODEL_DIR, steps=1)
    scheduler = BlockScheduler(StftEngine(separator.config.stft.n_fft, separator.config.stft.hop, model=separator),
                               host_block=128)
    scheduler.configure(sample_rate, 128, 1)
    measured = impulse_delay(scheduler, fixed_blocks(128), sample_rate)
    print(f"latency with the model at host block 128: reported {scheduler.latency_samples} samples "
          f"({1000 * scheduler.latency_samples / sample_rate:.2f} ms), measured {measured}")
    print(f"wrote the 1-step targets and residuals to {out_dir}")
