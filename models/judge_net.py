"""The judge's network (training half, torch): band features + prompt -> predicted SI-SDR in dB.

Read top-down: ``JudgeNet`` lifts each frame's band features, lets the prompt scale and
shift them (the same frame can be a fine estimate of "speech" and a poor one of "piano"),
mixes a few neighbouring frames with a causal-free convolution (the judge runs on a
finished window, not on the audio path), pools mean and spread over the window and
regresses one number. Small on purpose: it runs a few times a second beside the model.

A judge with consistency features (``JudgeConfig.consistency_features``: the six of
``judge.consistency_features``, ten with the separator's posterior, or nineteen with the
estimate's mask features too) passes that number and
those scalars through a small fusion network, which gives the final score, or through several
fitted from different seeds whose scores are averaged (``JudgeConfig.fusion_members``,
``ensemble_of``). The band network is trained first, on many cheap windows; the fusion after
it, with the band network frozen, on fewer windows that were re-separated. A judge may also
hold a tagger (``JudgeConfig.tagger_width``, ``with_tagger``, models/tagger.py), fitted on its
own task and frozen here, whose contrast joins the fusion's scalars from the same band features,
or several taggers whose contrasts are averaged (``JudgeConfig.tagger_members``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import JudgeConfig
from .judge import JUDGE_GRAPH, JudgeFolderError
from .tagger import TAGGER_SHAPE, Tagger

WEIGHTS_FILE = "judge.safetensors"
OPSET = 17
FUSION_SCALE_DB = 10.0
RESEPARATOR_FOLDER = "reseparator"


class JudgeNet(nn.Module):
    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.frame_in = nn.Sequential(nn.Linear(config.feature_dim, width), nn.GELU(), nn.Linear(width, width))
        self.prompt = nn.Sequential(nn.Linear(config.text_dim, config.text_bottleneck), nn.Tanh())
        self.prompt_film = nn.Linear(config.text_bottleneck, 2 * width)
        self.temporal = nn.Conv1d(width, width, config.kernel_frames, padding=config.kernel_frames // 2)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * width + config.text_bottleneck, width),
                                  nn.GELU(), nn.Linear(width, 1))
        if config.consistency_features:
            self.fusion = fusion_network(config) if config.fusion_members == 1 else \
                nn.ModuleList(fusion_network(config) for _ in range(config.fusion_members))
        if config.tagger_width:
            self.tagger = Tagger(config) if config.tagger_members == 1 else \
                nn.ModuleList(Tagger(config) for _ in range(config.tagger_members))

    def forward(self, features: torch.Tensor, text: torch.Tensor,
                consistency: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, feature_dim), (batch, text_dim)[, (batch, consistency_features)] -> (batch,) dB."""
        if not self.config.consistency_features:
            return self.band_score(features, text)
        return self.fused_score(self.frozen_scores(features, text), consistency)

    def frozen_scores(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """What the fusion takes beside the consistency features and does not train: (batch, 1) the
        band network's score in dB, or (batch, 2) with the taggers' mean contrast after it."""
        band_score = self.band_score(features, text)[:, None]
        if not self.config.tagger_width:
            return band_score
        contrast = torch.stack([member.contrast(features, text) for member in members(self.tagger)]).mean(dim=0)
        return torch.cat((band_score, contrast[:, None]), dim=-1)

    def fused_score(self, frozen: torch.Tensor, consistency: torch.Tensor) -> torch.Tensor:
        """(batch, 1 or 2) from ``frozen_scores`` and (batch, consistency_features) -> (batch,) dB."""
        inputs = torch.cat((frozen[:, :1] / FUSION_SCALE_DB, consistency, frozen[:, 1:]), dim=-1)
        fused = torch.stack([member(inputs) for member in members(self.fusion)]).mean(dim=0)
        return fused[:, 0] * FUSION_SCALE_DB

    def band_parameters(self) -> list[nn.Parameter]:
        return [value for name, value in self.named_parameters() if not name.startswith(("fusion.", "tagger."))]

    def tagger_parameters(self) -> list[nn.Parameter]:
        return [value for name, value in self.named_parameters() if name.startswith("tagger.")]

    def band_score(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        prompt = self.prompt(text)
        scale, shift = self.prompt_film(prompt)[:, None].chunk(2, dim=-1)
        frames = self.frame_in(features) * (1 + scale) + shift
        frames = frames + self.temporal(nn.functional.gelu(frames).transpose(1, 2)).transpose(1, 2)
        frames = nn.functional.gelu(frames)
        pooled = torch.cat((frames.mean(dim=1), frames.std(dim=1, unbiased=False), prompt), dim=-1)
        return self.head(pooled)[:, 0]


def members(module: nn.Module) -> list[nn.Module]:
    """The networks a judge averages: those of a ``ModuleList``, or the one network (judges of one
    fusion or one tagger keep it unwrapped, so their weights load under the names they had)."""
    return list(module) if isinstance(module, nn.ModuleList) else [module]


def fusion_network(config: JudgeConfig) -> nn.Sequential:
    width = config.fusion_width
    inputs = 1 + config.consistency_features + (1 if config.tagger_width else 0)
    return nn.Sequential(nn.Linear(inputs, width), nn.GELU(),
                         nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))


def ensemble_of(members: list[JudgeNet]) -> JudgeNet:
    """One judge whose fusion averages those of ``members``: judges of one band network (the first's
    is kept, the others' must equal it), each with a single fusion network."""
    first = members[0]
    if len(members) == 1:
        return first
    config = dataclasses.replace(first.config, fusion_members=len(members))
    band = {name: value for name, value in first.state_dict().items() if not name.startswith("fusion.")}
    for member in members:
        if member.config.fusion_members != 1:
            raise ValueError("an ensemble member must have a single fusion network")
        if member.config != first.config:
            raise ValueError("ensemble members differ in their configs")
        if any(not torch.equal(value, member.state_dict()[name]) for name, value in band.items()):
            raise ValueError("ensemble members differ in their band networks")
    model = JudgeNet(config)
    state = dict(band)
    for index, member in enumerate(members):
        state |= {f"fusion.{index}.{name[len('fusion.'):]}": value
                  for name, value in member.state_dict().items() if name.startswith("fusion.")}
    model.load_state_dict(state)
    return model.eval()


def save_judge(model: JudgeNet, folder: Path, extra: dict | None = None, reseparator: Path | None = None) -> None:
    """config.json + safetensors + the ONNX graph the serving half runs; with ``reseparator``
    (a separation checkpoint folder), a copy of its checkpoint, which the judge asks from then on."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    if reseparator is not None:
        config = dataclasses.replace(config, reseparator=RESEPARATOR_FOLDER)
        copy = folder / RESEPARATOR_FOLDER
        copy.mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(Path(reseparator) / name, copy / name)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    save_file({name: value.detach().contiguous() for name, value in model.state_dict().items()},
              str(folder / WEIGHTS_FILE))
    if extra:
        (folder / "training.json").write_text(json.dumps(extra, indent=2) + "\n")
    export_judge(model, folder / JUDGE_GRAPH)


def load_judge(folder: Path) -> JudgeNet:
    folder = Path(folder)
    try:
        config = JudgeConfig.from_dict(json.loads((folder / "config.json").read_text()))
        model = JudgeNet(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except FileNotFoundError as error:
        raise JudgeFolderError(f"{error.filename}: missing") from None
    except (ValueError, RuntimeError, TypeError) as error:
        raise JudgeFolderError(f"{folder}: not a judge checkpoint ({str(error).splitlines()[0]})") from None
    return model.eval()


def with_fusion(base: JudgeNet, consistency_features: int) -> JudgeNet:
    """A judge with ``base``'s band network and tagger (``base`` may be fused already: its fusion is
    dropped) and a new fusion network for the consistency features."""
    config = dataclasses.replace(base.config, consistency_features=consistency_features, fusion_members=1)
    return without_fusion(config, {name: value for name, value in base.state_dict().items()
                                   if not name.startswith("fusion.")})


def with_tagger(base: JudgeNet, taggers: list[Tagger]) -> JudgeNet:
    """``base``'s band network (its fusion and any tagger dropped) with ``taggers``, alike in shape,
    whose mean contrast a fusion made by ``with_fusion`` will take."""
    tagged = taggers[0].config
    shape = TAGGER_SHAPE.values()
    for other in taggers[1:]:
        if any(getattr(other.config, name) != getattr(tagged, name) for name in shape):
            raise ValueError("the taggers differ in shape (width, depth, kernel, classes or temperature)")
    config = dataclasses.replace(base.config, **{name: getattr(tagged, name) for name in shape},
                                 tagger_members=len(taggers))
    if (tagged.n_bands, tagged.text_dim) != (config.n_bands, config.text_dim):
        raise ValueError(f"the tagger takes {tagged.n_bands} bands and {tagged.text_dim}-d prompts, the judge "
                         f"{config.n_bands} and {config.text_dim}")
    state = {name: value for name, value in base.state_dict().items() if not name.startswith(("fusion.", "tagger."))}
    for index, tagger in enumerate(taggers):
        prefix = "tagger." if len(taggers) == 1 else f"tagger.{index}."
        state |= {prefix + name: value for name, value in tagger.state_dict().items()}
    return without_fusion(config, state)


def without_fusion(config: JudgeConfig, state: dict) -> JudgeNet:
    """A judge of ``config`` loaded from ``state``, which must hold everything but the fusion."""
    model = JudgeNet(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not name.startswith("fusion.") for name in missing):
        raise ValueError(f"the base judge does not fit: missing {missing}, unexpected {unexpected}")
    return model


def export_judge(model: JudgeNet, path: Path) -> None:
    config = model.config
    inputs = (torch.zeros(1, 64, config.feature_dim), torch.zeros(1, config.text_dim))
    names = ["features", "text"]
    axes = {"features": {0: "batch", 1: "frames"}, "text": {0: "batch"}, "score_db": {0: "batch"}}
    if config.consistency_features:
        inputs += (torch.zeros(1, config.consistency_features),)
        names.append("consistency")
        axes["consistency"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model.eval(), inputs, str(path), input_names=names, output_names=["score_db"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
