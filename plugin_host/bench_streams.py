"""`samstream bench --live --device D`: the engine's per-hop compute, and how many streams fit.

The engine that `make_engine` builds for the device (the device path on CUDA, the batched
CPU engine otherwise) runs hop by hop on the bundled example, timed around `process`
(hop in, hop out, everything between). First one stream: per-hop p50/p99/max. Then batches
of 1, 2, 4, ... streams of 48 kHz audio, each stream with its own prompt, in one model call
per hop: a batch fits when its per-hop p99 stays under the hop's duration, the time the
worker has before the next hop is due, so the live path keeps its fixed latency (the STFT's
plus one hop of buffer) without misses. The largest batch that fits is the figure; the
largest whose median fits is reported beside it, since on a shared machine the p99 measures
the neighbours as much as the engine.

`--device cuda` needs a CUDA GPU and onnxruntime-gpu; without them it stops with the reason.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from samstream.models.runtime import Prompt
from samstream.stream.gpu_engine import make_engine
from samstream.stream.hop_clock import HopTimes, time_hops

from .audio_files import read_audio
from .bench_live import EXAMPLE

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"
WARM_UP_HOPS = 10
MIN_HOPS = 50


def stream_hops(engine, signal: np.ndarray, seconds: float) -> HopTimes:
    """Per-hop times of ``engine.process`` over ``seconds`` (at least MIN_HOPS hops), on a thread
    scheduled and paced as the live worker is (``stream.hop_clock``)."""
    channels, length = signal.shape
    hop = engine.hop
    hop_in = np.zeros((channels, hop), np.float32)
    hop_out = np.zeros((channels, hop), np.float32)
    hops = length // hop
    clock = {}

    def process_hop(index: int) -> None:
        if index == WARM_UP_HOPS:
            clock["started"] = time.perf_counter()  # after the warm-up (compilation, ORT's first runs)
        start = (index % hops) * hop
        np.copyto(hop_in, signal[:, start:start + hop])
        engine.process(hop_in, hop_out)

    return time_hops(process_hop, MIN_HOPS, warm_up=WARM_UP_HOPS, pace_ms=1e3 * hop / engine.sample_rate,
                     keep_going=lambda _: time.perf_counter() - clock["started"] < seconds)


def measure(model_dir: Path, device: str, streams: int, steps: int | None, threads: int, seconds: float,
            mono: np.ndarray, say, cuda_graph: bool = False) -> dict:
    engine = make_engine(model_dir, device=device, streams=streams, steps=steps, threads=threads, say=say,
                         cuda_graph=cuda_graph)
    separator = engine.separator
    config = separator.config
    rng = np.random.default_rng(streams)
    for stream in range(streams):
        text = rng.standard_normal(config.prompt.text_dim).astype(np.float32)
        separator.set_prompt(Prompt(text_embedding=text / np.linalg.norm(text)), stream)
    engine.configure(config.stft.sample_rate, engine.hop, streams)
    # Each stream hears the example from its own starting point, so no two rows are alike.
    offsets = rng.integers(0, mono.size, streams)
    signal = np.stack([np.roll(mono, -int(offset)) for offset in offsets]).astype(np.float32)
    hop_ms = 1000.0 * engine.hop / config.stft.sample_rate
    figures = stream_hops(engine, signal, seconds).figures(hop_ms)
    return {"streams": streams, "device": engine.device, "hops": figures["hops"],
            "hop_ms_p50": figures["p50"], "hop_ms_p99": figures["p99"], "hop_ms_max": figures["max"],
            "cpu_ms_p50": figures["cpu_p50"], "cpu_ms_p99": figures["cpu_p99"], "realtime": figures["realtime"],
            "per_stream_ms_p50": figures["p50"] / streams, "hop_budget_ms": hop_ms,
            "fits": figures["p99"] < hop_ms, "latency_samples": engine.latency_samples + engine.hop}


def run_stream_bench(out_dir: str, device: str, max_streams: int = 64, model: str | None = None,
                     steps: int | None = None, threads: int = 1, seconds: float = 2.0, say=print,
                     cuda_graph: bool = False) -> dict:
    if max_streams < 1:
        raise ValueError(f"--streams must be at least 1, got {max_streams}")
    model_dir = Path(model) if model else DEFAULT_MODEL
    signal, _ = read_audio(EXAMPLE)
    mono = signal.mean(axis=0).astype(np.float32)
    single = measure(model_dir, device, 1, steps, threads, seconds, mono, say, cuda_graph)
    batches = []
    count = 1
    quiet = [].append  # "auto" said where it runs with the first measurement
    while count <= max_streams:
        batches.append(single if count == 1 else measure(model_dir, device, count, steps, threads, seconds, mono,
                                                          quiet, cuda_graph))
        # Past a batch whose p99 misses, a busy machine's outliers may be to blame; past one whose
        # median misses, more streams cannot fit.
        if batches[-1]["hop_ms_p50"] >= batches[-1]["hop_budget_ms"]:
            break
        count *= 2
    fitting = [batch["streams"] for batch in batches if batch["fits"]]
    fitting_median = [batch["streams"] for batch in batches if batch["hop_ms_p50"] < batch["hop_budget_ms"]]
    results = {"device": single["device"], "requested_device": device, "model": str(model_dir),
               "threads": threads, "seconds_per_case": seconds, "machine": platform.processor() or platform.machine(),
               "cuda_graph": cuda_graph and single["device"] == "cuda",
               "single_stream": single, "batches": batches, "max_streams_that_fit": max(fitting, default=0),
               "max_streams_by_median": max(fitting_median, default=0),
               "streams_tried_up_to": max_streams}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render_report(results))
    say(render_report(results))
    return results


def render_report(results: dict) -> str:
    single = results["single_stream"]
    budget = single["hop_budget_ms"]
    lines = [
        f"# samstream engine benchmark: {results['device']}",
        "",
        f"Model `{results['model']}`, one hop = {budget:.2f} ms of 48 kHz audio; compute timed around "
        f"`Engine.process` (hop in, STFT, one model call for every stream, mask, ISTFT, hop out); "
        f"ONNX Runtime threads: {results['threads']}.",
        "",
        f"One stream: per-hop compute p50 / p99 / max = {single['hop_ms_p50']:.3f} / {single['hop_ms_p99']:.3f} / "
        f"{single['hop_ms_max']:.3f} ms over {single['hops']} hops; CPU time p50 / p99 = "
        f"{single['cpu_ms_p50']:.3f} / {single['cpu_ms_p99']:.3f} ms; "
        + ("timed at real-time priority, as the live worker runs." if single["realtime"]
           else "timed at normal priority (real-time refused): other load shows in the wall times."),
        "",
        "| streams | hops | p50 ms | p99 ms | max ms | p50 per stream ms | p99 under the hop |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch in results["batches"]:
        lines.append(f"| {batch['streams']} | {batch['hops']} | {batch['hop_ms_p50']:.3f} | {batch['hop_ms_p99']:.3f} "
                     f"| {batch['hop_ms_max']:.3f} | {batch['per_stream_ms_p50']:.3f} | "
                     f"{'yes' if batch['fits'] else 'no'} |")
    lines += [
        "",
        f"Streams that fit at a fixed latency of {single['latency_samples']} samples (the STFT's plus one hop): "
        f"{results['max_streams_that_fit']}; by the median instead of p99: {results['max_streams_by_median']} "
        f"(batches doubled from 1 up to {results['streams_tried_up_to']}, stopping after the first whose median "
        "misses the hop).",
        "",
    ]
    return "\n".join(lines)
