"""Checkpoints describe themselves: ``config.json`` beside ``model.safetensors`` (training half)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .transformer import SeparationDiT

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(model: SeparationDiT, directory: Path, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_NAME)
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    metadata = {key: json.dumps(value) for key, value in (extra or {}).items()}
    partial = directory / (WEIGHTS_NAME + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(directory / WEIGHTS_NAME)
    return directory


def load_config(directory: Path) -> ModelConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(f"{path}: missing (a checkpoint is config.json beside {WEIGHTS_NAME})")
    try:
        return ModelConfig.load(path)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a samstream model config ({error})") from None


# Parts a model may gain over the checkpoint it grows from: all start at zero, so the grown
# model computes what the checkpoint did (``grow_from``).
GROWABLE_PREFIXES = ("detail.", "detail_mix.", "detail_blocks.")


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path}: unreadable weights ({error})") from None


def weight_mismatch(model: SeparationDiT, tensors: dict[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing, unexpected, wrong shape): the names where ``tensors`` do not fit ``model``, sorted."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(name for name in set(expected) & set(tensors) if expected[name].shape != tensors[name].shape)
    return missing, unexpected, wrong


def added_block_prefixes(tensors: dict, depth: int) -> tuple[str, ...]:
    """The blocks a deeper model has past the checkpoint's last one. Each starts as the identity
    (adaLN-Zero: its modulation, gates included, is zero), so the grown model computes what the
    checkpoint did until training opens them."""
    blocks = {int(name.split(".")[1]) for name in tensors if name.startswith("blocks.")}
    return tuple(f"blocks.{index}." for index in range(max(blocks, default=-1) + 1, depth))


def grow_from(model: SeparationDiT, directory: Path) -> list[str]:
    """Load a checkpoint into a model that may have more parts (a detail head, more blocks after
    the checkpoint's) -> the names left new.

    Everything the checkpoint has must fit; only ``GROWABLE_PREFIXES`` and added blocks may be
    missing from it.
    """
    tensors = read_weights(directory)
    missing, unexpected, wrong = weight_mismatch(model, tensors)
    ungrowable = [name for name in missing if not name.startswith(GROWABLE_PREFIXES)
                  and not name.startswith(added_block_prefixes(tensors, model.config.transformer.depth))]
    if ungrowable or unexpected or wrong:
        raise CheckpointError(f"{Path(directory) / WEIGHTS_NAME}: cannot grow into this model (missing "
                              f"{ungrowable[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict(tensors, strict=False)
    return missing


def load_checkpoint(directory: Path) -> SeparationDiT:
    """One call: config.json + model.safetensors -> a SeparationDiT in eval mode."""
    config = load_config(directory)
    tensors = read_weights(directory)
    model = SeparationDiT(config)
    missing, unexpected, wrong = weight_mismatch(model, tensors)
    if missing or unexpected or wrong:
        raise CheckpointError(f"{Path(directory) / WEIGHTS_NAME}: does not match {CONFIG_NAME} (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict(tensors)
    return model.eval()


def average_checkpoints(directories: list[Path], out: Path) -> Path:
    """The mean of checkpoints' weights (stochastic weight averaging along one run), saved to ``out``.

    Checkpoints a few hundred steps apart scatter around a minimum by the order of the data
    they saw; their mean sits nearer it. All must share one config, so that each weight means
    the same thing in each.
    """
    if len(directories) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(directories)}")
    config = load_config(directories[0])
    total = None
    for directory in directories:
        if load_config(directory) != config:
            raise CheckpointError(f"{Path(directory) / CONFIG_NAME}: another model than "
                                  f"{Path(directories[0]) / CONFIG_NAME}; only one model's checkpoints average")
        weights = load_checkpoint(directory).state_dict()
        total = {name: value.double() for name, value in weights.items()} if total is None else \
            {name: total[name] + value.double() for name, value in weights.items()}
    model = SeparationDiT(config)
    model.load_state_dict({name: (value / len(directories)).float() for name, value in total.items()})
    return save_checkpoint(model, out, {"averaged": [str(directory) for directory in directories]})


def checkpoint_metadata(directory: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(Path(directory) / WEIGHTS_NAME), framework="pt") as handle:
        return {key: json.loads(value) for key, value in (handle.metadata() or {}).items()}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
