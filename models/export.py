"""ONNX export of one streaming hop (training half).

The hop graph takes the newest mixture frame, the prompt's conditioning, fresh noise and
the key/value caches of every flow step, runs the configured number of Euler steps, and
returns the target mask with this frame's keys and values. Every shape is fixed, so ONNX
Runtime plans once; the caches are inputs only, and the caller writes the new keys and
values into its own ring in place (no cache copy per hop).

The conditioning (every block's adaLN modulations, for each flow step) depends on the
prompt and the flow time alone: a second, small graph computes it when a prompt is set,
so no hop pays for it (paced and at real-time priority, 13 % off a one-step hop's median,
measured against the same weights with the prompt inside the hop graph). The first flow step starts at
t = 0, where the noisy state adds nothing: the graph leaves it out, and a one-step graph
needs no noise at all.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from .checkpoint import WEIGHTS_NAME, load_checkpoint
from .flow import Conditioning, consistent_target_mask, generate_masks
from .runtime import SERVING_FORMAT, conditioning_width
from .transformer import SeparationDiT, mixture_features

OPSET = 17
INPUT_NAMES = ["spectrum", "noise", "conditioning", "anchor", "visual", "key_cache", "value_cache", "ages", "seen"]
OUTPUT_NAMES = ["target_mask", "new_keys", "new_values"]
CONDITION_INPUTS = ["text", "example_features", "has_example", "times"]
CONDITION_GRAPH = "condition.onnx"


class ConditionGraph(nn.Module):
    """A prompt and the flow steps' times (S,) -> the hop graph's ``conditioning`` (S, B, M), once per
    prompt; one graph serves every step count."""

    def __init__(self, model: SeparationDiT):
        super().__init__()
        self.model = model

    def forward(self, text, example_features, has_example, times):
        prompt = self.model.prompt_embedding(text, example_features, has_example)
        condition = functional.silu(self.model.time(times)[:, None] + prompt[None])
        return self.model.modulations(condition)


class HopGraph(nn.Module):
    def __init__(self, model: SeparationDiT, steps: int):
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, spectrum, noise, conditioning, anchor, visual, key_cache, value_cache, ages, seen):
        features = mixture_features(spectrum, self.model.config.transformer.compression)
        state = noise
        keys, values = [], []
        for index in range(self.steps):
            time = torch.full((spectrum.shape[0],), index / self.steps)
            # With one step the cache's step axis is squeezed, not gathered: a gather would copy the cache.
            keys_in, values_in = ((key_cache[index], value_cache[index]) if self.steps > 1
                                  else (key_cache.squeeze(0), value_cache.squeeze(0)))
            estimate, key, value = self.model.step(features, state if index else None, time, conditioning[index],
                                                   anchor, visual, keys_in, values_in, ages, seen)
            # One step from t = 0 lands on the estimate itself; noise + (estimate - noise) would only round it.
            state = estimate if self.steps == 1 else state + self.model.velocity(estimate, state, time) / self.steps
            keys.append(key)
            values.append(value)
        return consistent_target_mask(state), torch.stack(keys), torch.stack(values)


SEQUENCE_INPUTS = ["spectrum", "noise", "text", "example_features", "has_example", "anchors", "visual"]


class SequenceGraph(nn.Module):
    """Whole sequences at once, for offline separation: the same numbers as the hop graph."""

    def __init__(self, model: SeparationDiT, steps: int):
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, spectrum, noise, text, example_features, has_example, anchors, visual):
        conditioning = Conditioning(text, example_features, has_example, anchors, visual)
        return generate_masks(self.model, spectrum, conditioning, self.steps, noise=noise)


def export_sequence(model: SeparationDiT, steps: int, path: Path) -> Path:
    config = model.config
    bins, frames = config.stft.n_bins, 8
    inputs = (torch.zeros(1, frames, 2, bins), torch.zeros(1, frames, 2 * bins), torch.zeros(1, config.prompt.text_dim),
              torch.zeros(1, bins), torch.zeros(1), torch.zeros(1, frames, dtype=torch.long),
              torch.zeros(1, frames, config.prompt.visual_dim))
    axes = {"spectrum": {1: "frames"}, "noise": {1: "frames"}, "anchors": {1: "frames"}, "visual": {1: "frames"},
            "target_mask": {1: "frames"}}
    with torch.no_grad():
        torch.onnx.export(SequenceGraph(model.eval(), steps), inputs, str(path), input_names=SEQUENCE_INPUTS,
                          output_names=["target_mask"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return path


def example_inputs(model: SeparationDiT, steps: int, batch: int = 1) -> tuple:
    config = model.config
    spec = config.transformer
    bins = config.stft.n_bins
    cache = torch.zeros(steps, batch, spec.depth, spec.heads, spec.context_frames, model.head_dim)
    return (torch.zeros(batch, 2, bins), torch.zeros(batch, 2 * bins),
            torch.zeros(steps, batch, conditioning_width(config)),
            torch.zeros(batch, dtype=torch.long), torch.zeros(batch, config.prompt.visual_dim), cache, cache.clone(),
            torch.arange(1, spec.context_frames + 1), torch.zeros(batch, dtype=torch.long))


def export_hop(model: SeparationDiT, steps: int, path: Path) -> Path:
    model = model.eval()
    graph = HopGraph(model, steps)
    with torch.no_grad():
        torch.onnx.export(graph, example_inputs(model, steps), str(path), input_names=INPUT_NAMES,
                          output_names=OUTPUT_NAMES, opset_version=OPSET, dynamo=False)
    return path


# The axis of every input and output that counts streams; ``ages`` is shared by all rows.
STEP_MAJOR = ("conditioning", "key_cache", "value_cache", "new_keys", "new_values")
BATCH_AXES = {**{name: {0: "streams"} for name in [*INPUT_NAMES, "target_mask"]
                 if name not in (*STEP_MAJOR, "ages")},
              **{name: {1: "streams"} for name in STEP_MAJOR}}


def export_condition(model: SeparationDiT, path: Path) -> Path:
    """The prompt's conditioning graph, with free step and stream axes (every runtime shares it)."""
    config = model.config
    inputs = (torch.zeros(2, config.prompt.text_dim), torch.zeros(2, config.stft.n_bins), torch.zeros(2),
              torch.tensor([0.0, 0.5, 0.75]))
    axes = {"text": {0: "streams"}, "example_features": {0: "streams"}, "has_example": {0: "streams"},
            "times": {0: "steps"}, "conditioning": {0: "steps", 1: "streams"}}
    with torch.no_grad():
        torch.onnx.export(ConditionGraph(model.eval()), inputs, str(path), input_names=CONDITION_INPUTS,
                          output_names=["conditioning"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return path


def export_batched_hop(model: SeparationDiT, steps: int, path: Path) -> Path:
    """The hop graph with a free stream axis: many streams, one call per hop (``models.batched_runtime``)."""
    model = model.eval()
    with torch.no_grad():
        torch.onnx.export(HopGraph(model, steps), example_inputs(model, steps, batch=2), str(path),
                          input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, dynamic_axes=BATCH_AXES,
                          opset_version=OPSET, dynamo=False)
    return path


def weights_digest(checkpoint_dir: Path) -> str:
    return hashlib.sha256((Path(checkpoint_dir) / WEIGHTS_NAME).read_bytes()).hexdigest()


def serving_is_current(checkpoint_dir: Path, out_dir: Path, steps: list[int]) -> bool:
    """True when ``out_dir`` holds graphs for every step count, exported from these very weights."""
    manifest_path = Path(out_dir) / "serving.json"
    if not manifest_path.exists() or not (Path(checkpoint_dir) / WEIGHTS_NAME).exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    kinds = ("hop_graphs", "int8_hop_graphs", "sequence_graphs", "batched_hop_graphs")
    return (manifest.get("weights_sha256") == weights_digest(checkpoint_dir)
            and manifest.get("format") == SERVING_FORMAT
            and (Path(out_dir) / manifest.get("condition_graph", CONDITION_GRAPH)).exists()
            and all(str(count) in manifest.get(kind, {}) for kind in kinds for count in steps)
            and all((Path(out_dir) / name).exists() for kind in kinds for name in manifest[kind].values()))


def quantize_hop(path: Path, out_path: Path) -> Path:
    """int8 weights, dynamic activation scales: the hop graph's variant for slower CPUs.

    Whether it keeps quality is measured, not assumed: ``benchmarks/bench_separation.py
    --variant int8`` compares it with float32 on the validation set (the model card has it).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(path), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def export_model_dir(checkpoint_dir: Path, out_dir: Path, steps: int) -> Path:
    """checkpoint (config.json + weights) -> a serving folder: hop_{steps}.onnx (+ _int8, + _batched),
    sequence_{steps}.onnx, condition.onnx (any step count), config.json and serving.json naming them."""
    model = load_checkpoint(checkpoint_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.save(out_dir / "config.json")
    path = export_hop(model, steps, out_dir / f"hop_{steps}.onnx")
    quantized = quantize_hop(path, out_dir / f"hop_{steps}_int8.onnx")
    sequence = export_sequence(model, steps, out_dir / f"sequence_{steps}.onnx")
    batched = export_batched_hop(model, steps, out_dir / f"hop_{steps}_batched.onnx")
    condition = export_condition(model, out_dir / CONDITION_GRAPH)
    manifest_path = out_dir / "serving.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    digest = weights_digest(checkpoint_dir)
    if manifest.get("weights_sha256") != digest or manifest.get("format") != SERVING_FORMAT:
        manifest = {"weights_sha256": digest, "format": SERVING_FORMAT}
    manifest.setdefault("hop_graphs", {})[str(steps)] = path.name
    manifest.setdefault("int8_hop_graphs", {})[str(steps)] = quantized.name
    manifest.setdefault("sequence_graphs", {})[str(steps)] = sequence.name
    manifest.setdefault("batched_hop_graphs", {})[str(steps)] = batched.name
    manifest["condition_graph"] = condition.name
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
