"""Per-hop compute of a model on the live path: STFT -> ONNX hop graph -> mask -> ISTFT.

Usage: python benchmarks/bench_model_hop.py [--model DIR | --preset small|default] [--hops N]
Timed as the live worker runs (real-time scheduling where allowed, ``stream.hop_clock``).
Without --model, a randomly initialised model of the preset is exported to a temporary
folder: compute does not depend on the weights' values.
"""
import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def exported_preset(preset: str) -> Path:
    from samstream.models.checkpoint import save_checkpoint
    from samstream.models.export import export_model_dir
    from samstream.models.transformer import SeparationDiT
    from samstream.plugin_host.model_cli import preset_config

    folder = Path(tempfile.mkdtemp())
    save_checkpoint(SeparationDiT(preset_config(preset)), folder / "checkpoint")
    for steps in (1, 2):
        export_model_dir(folder / "checkpoint", folder / "serving", steps)
    return folder / "serving"


def time_steps(folder: Path, steps: int, hops: int) -> dict:
    from samstream.models.runtime import OnnxSeparator, Prompt
    from samstream.stream.engine import StftEngine
    from samstream.stream.hop_clock import time_hops

    separator = OnnxSeparator(folder, steps=steps)
    separator.set_prompt(Prompt(text_embedding=np.full(384, 0.05, np.float32)))
    engine = StftEngine(separator.config.stft.n_fft, separator.config.stft.hop, model=separator)
    engine.configure(48000, separator.config.stft.hop, 1)
    hop = separator.config.stft.hop
    signal = (np.random.default_rng(0).standard_normal((1, hop * 64)) * 0.1).astype(np.float32)
    out = np.zeros((1, hop), np.float32)

    def process_hop(index: int) -> None:
        engine.process(signal[:, (index % 64) * hop:(index % 64 + 1) * hop], out)

    period_ms = 1e3 * hop / 48000
    return time_hops(process_hop, hops - 200, warm_up=200, pace_ms=period_ms).figures(period_ms)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--hops", type=int, default=2000)
    arguments = parser.parse_args()
    folder = Path(arguments.model) if arguments.model else exported_preset(arguments.preset)
    for steps in (1, 2):
        figures = time_steps(folder, steps, arguments.hops)
        print(f"{folder.name} {steps} step(s): per hop p50 {figures['p50']:.2f} ms, p99 {figures['p99']:.2f} ms,"
              f" max {figures['max']:.2f} ms (CPU time p50 {figures['cpu_p50']:.2f}, p99 {figures['cpu_p99']:.2f});"
              f" hop = {figures['budget_ms']:.2f} ms, {figures['over_budget']} over;"
              f" {'real-time' if figures['realtime'] else 'normal'} scheduling; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
