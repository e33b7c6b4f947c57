"""Per-hop compute of a model on the live path: STFT -> ONNX hop graph -> mask -> ISTFT.

Usage: python benchmarks/bench_model_hop.py [--model DIR | --preset small|default] [--hops N]
Without --model, a randomly initialised model of the preset is exported to a temporary
folder: compute does not depend on the weights' values.
"""
import argparse
import os
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--hops", type=int, default=2000)
    arguments = parser.parse_args()
    from samstream.models.runtime import OnnxSeparator, Prompt
    from samstream.stream.engine import StftEngine

    folder = Path(arguments.model) if arguments.model else exported_preset(arguments.preset)
    for steps in (1, 2):
        separator = OnnxSeparator(folder, steps=steps)
        separator.set_prompt(Prompt(text_embedding=np.full(384, 0.05, np.float32)))
        engine = StftEngine(separator.config.stft.n_fft, separator.config.stft.hop, model=separator)
        engine.configure(48000, separator.config.stft.hop, 1)
        hop = separator.config.stft.hop
        signal = (np.random.default_rng(0).standard_normal((1, hop * 64)) * 0.1).astype(np.float32)
        out = np.zeros((1, hop), np.float32)
        timings = []
        for index in range(arguments.hops):
            block = signal[:, (index % 64) * hop:(index % 64 + 1) * hop]
            started = time.perf_counter()
            engine.process(block, out)
            timings.append(time.perf_counter() - started)
        ms = np.array(timings[200:]) * 1e3
        budget = 1e3 * hop / 48000
        print(f"{folder.name} {steps} step(s): per hop p50 {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms,"
              f" max {ms.max():.2f} ms; hop = {budget:.2f} ms; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
