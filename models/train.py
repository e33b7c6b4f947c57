"""`samstream train`: flow-matching training of the separation DiT (training half).

One process on a CPU, or ``torchrun --nproc_per_node N`` with DistributedDataParallel;
EMA weights, gradient accumulation, resume from the run folder, a progress bar, a CSV
log, and validation SI-SDR improvement at a fixed interval. The run folder holds
``checkpoint/`` (EMA weights: config.json + model.safetensors, what export reads) and
``training_state.pt`` (everything needed to resume).
"""
from __future__ import annotations

import copy
import csv
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as distributed
from tqdm import tqdm

from samstream.kernels.level import level_normalised

from .checkpoint import count_parameters, grow_from, load_checkpoint, save_checkpoint
from .config import PRECISIONS, ModelConfig
from .data.mixtures import MixtureConfig
from .flow import Conditioning, flow_matching_loss, generate_masks, spectra
from .metrics import si_sdr
from .prompts import PromptSampler, TrainingExample
from .torch_dsp import istft
from .transformer import SeparationDiT


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 20000
    batch_size: int = 8
    accumulate: int = 1
    learning_rate: float = 4e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    seconds: float = 2.0
    validate_every: int = 500
    validation_steps: int = 4  # flow steps used for the periodic validation figure
    save_every: int = 250
    seed: int = 0
    threads: int = 0  # 0: torch's default
    # The one-step sampler's output is the network's clean estimate at t = 0, and SI-SDR counts a
    # mask error by the mixture's power there: half of each batch trains that estimate, all bins
    # weighed by power. From step 14,000 of the small preset, 600 steps so gained 0.6 dB at one step.
    weight_exponent: float | None = 2.0  # None: weigh bins by the compressed mixture features
    zero_time_share: float = 0.5
    visual_share: float = 0.0  # examples that also carry the target's box in a drawn clip (models.prompts)
    # The one-step estimate's error in dB (an SDR loss: flow.distortion_db) beside the flow loss. From
    # the model shipped at +4.57 / +4.24 dB, 600 steps gave +4.67 / +4.23 without it, +4.76 / +4.58 at 0.3.
    distortion_weight: float = 1.0
    hard_pairs: float = 0.0  # the share of the interferer draw weighed by difficulty (data.hard_pairs)
    # Mixture RMS drawn per example, dBFS. The model hears compressed magnitudes, so the level it was
    # trained over is the level it separates best (benchmarks/bench_level.py).
    level_db: tuple[float, float] = MixtureConfig.level_db
    speed_share: float = 0.0  # sources played faster or slower, up to MixtureConfig.speed_semitones
    speed_families: tuple[str, ...] = ()  # only sources of these families change speed; () means all
    device: str = "cpu"  # "cuda" trains on the GPU (under torchrun, each rank on its LOCAL_RANK's)
    precision: str = "float32"  # "bfloat16": the network under autocast; losses and weights stay float32
    workers: int = 0  # batch-drawing processes (models.batches); 0 draws in the loop, and resumes exactly
    minutes: float = 0.0  # a wall-clock budget: the schedule ends at it, or at ``steps``, whichever is first


def separate_waveforms(model: SeparationDiT, mixture: torch.Tensor, conditioning: Conditioning, steps: int,
                       noise: torch.Tensor | None = None) -> np.ndarray:
    """Torch reference separation of whole (B, n) mixtures -> target waveforms (B, n)."""
    config = model.config
    spectrum = spectra(mixture.cpu(), config)
    # The model hears each mixture at the serving path's level (kernels.level); its masks apply as they came.
    parameters = config.level_parameters()
    heard = spectrum if parameters is None else torch.from_numpy(
        np.stack([level_normalised(row, parameters) for row in spectrum.numpy()]))
    device = next(model.parameters()).device
    masks = generate_masks(model, heard.to(device), conditioning.to(device), steps, noise).cpu()
    complex_spectrum = torch.complex(spectrum[..., 0, :], spectrum[..., 1, :]) * masks
    return istft(complex_spectrum.transpose(-1, -2), config.stft.n_fft, config.stft.hop, mixture.shape[-1]).numpy()


def separate_batch(model: SeparationDiT, examples: list[TrainingExample], steps: int) -> np.ndarray:
    """Torch reference separation of whole training examples -> target waveforms (B, n)."""
    mixture, _, conditioning = PromptSampler.tensors(examples, model.config)
    return separate_waveforms(model, mixture, conditioning, steps)


class Teacher:
    """The multi-step teacher: the torch network integrated with ``flow.teacher_steps`` Euler steps.

    It starts from the very noise the ONNX graphs draw for the same seed, so at one or two
    steps it computes what the students' offline path computes, and the teacher's figures
    differ from theirs by the steps alone.
    """

    def __init__(self, directory: Path, steps: int | None = None):
        self.model = load_checkpoint(directory)
        self.steps = steps or self.model.config.flow.teacher_steps or 16

    def separate(self, mixture: np.ndarray, embedding: np.ndarray | None, seed: int = 0) -> np.ndarray:
        """(n,) mixture at the model's rate -> (n,) target."""
        config = self.model.config
        signal = torch.from_numpy(np.asarray(mixture, np.float32)[None])
        frames = spectra(signal, config).shape[1]
        conditioning = Conditioning.empty(config, 1, frames)
        if embedding is not None:
            conditioning.text = torch.from_numpy(np.array(embedding, np.float32)[None])
        noise = np.random.default_rng(seed).standard_normal((1, frames, 2 * config.stft.n_bins), dtype=np.float32)
        return separate_waveforms(self.model, signal, conditioning, self.steps, torch.from_numpy(noise))[0]


def validation_figures(model: SeparationDiT, examples: list[TrainingExample], steps: int) -> dict[str, float]:
    """Mean SI-SDR improvement of the target (extract) and of the residual (remove)."""
    estimates = separate_batch(model, examples, steps)
    extract, remove = [], []
    for example, estimate in zip(examples, estimates, strict=True):
        residual = example.mixture - example.target
        extract.append(si_sdr(estimate, example.target) - si_sdr(example.mixture, example.target))
        remove.append(si_sdr(example.mixture - estimate, residual) - si_sdr(example.mixture, residual))
    return {"si_sdri_extract": float(np.mean(extract)), "si_sdri_remove": float(np.mean(remove))}


def schedule_progress(step: int, settings: TrainSettings, seconds: float = 0.0) -> float:
    """How far the run is through its schedule, 0..1: by steps, or by time where it has a budget."""
    progress = step / max(1, settings.steps)
    if settings.minutes > 0:
        progress = max(progress, seconds / (60.0 * settings.minutes))
    return min(1.0, progress)


def learning_rate_at(step: int, settings: TrainSettings, seconds: float = 0.0) -> float:
    warm = min(1.0, (step + 1) / max(1, settings.warmup_steps))
    progress = schedule_progress(step, settings, seconds)
    return settings.learning_rate * warm * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))


class Trainer:
    def __init__(self, config: ModelConfig, settings: TrainSettings, run_dir: Path,
                 sampler: PromptSampler, validation: list[TrainingExample],
                 loss_fn: Callable | None = None, grow: Path | None = None):
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.owns_process_group = self.world > 1 and not distributed.is_initialized()
        if self.owns_process_group:
            distributed.init_process_group("nccl" if settings.device.startswith("cuda") else "gloo")
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = training_device(settings.device)
        if settings.workers < 0 or settings.minutes < 0:
            raise ValueError(f"--workers and --minutes must not be negative, got {settings.workers} and "
                             f"{settings.minutes}")
        if not 0.0 <= settings.zero_time_share <= 1.0:
            raise ValueError(f"--zero-time-share must lie in [0, 1], got {settings.zero_time_share}")
        if settings.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {settings.precision!r}")
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.sampler = sampler
        self.validation = validation
        self.loss_fn = loss_fn or functools.partial(flow_matching_loss, weight_exponent=settings.weight_exponent,
                                                    zero_time_share=settings.zero_time_share,
                                                    distortion_weight=settings.distortion_weight)
        torch.manual_seed(settings.seed)
        self.model = SeparationDiT(config)
        if grow is not None and not self.state_path.exists():
            grow_from(self.model, grow)  # a new run that starts from another checkpoint's weights
        self.model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.learning_rate,
                                           weight_decay=settings.weight_decay)
        self.step = 0
        self.seconds = 0.0  # training time of the run so far, resumes included (the time budget's clock)
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed * 1000 + self.rank)
        self.rng = np.random.default_rng(settings.seed * 1000 + self.rank)
        self._resume()
        self.network = self.model
        if self.world > 1:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.batches = None
        if settings.workers:
            from .batches import worker_batches

            self.batches = worker_batches(sampler, settings.batch_size, settings.seconds, workers=settings.workers,
                                          seed=settings.seed, rank=self.rank, first_step=self.step,
                                          pin_memory=self.device.type == "cuda")

    @property
    def state_path(self) -> Path:
        return self.run_dir / "training_state.pt"

    def _resume(self) -> None:
        if not self.state_path.exists():
            return
        state = torch.load(self.state_path, weights_only=False, map_location=self.device)
        # Read through from_dict, so that a field added to the config since (with its default)
        # does not make an old run look like another model.
        if ModelConfig.from_dict(state["config"]) != self.model.config:
            raise ValueError(f"{self.state_path}: was trained with another model config; use a new --run folder")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.seconds = state.get("seconds", 0.0)
        if state.get("device", "cpu") == self.device.type:  # a generator's state is its device's own
            self.generator.set_state(state["generator"].cpu())
        self.rng.bit_generator.state = state["rng"]
        if "pair_difficulty" in state and self.sampler.pair_difficulty is not None:
            self.sampler.pair_difficulty.load_state(state["pair_difficulty"])

    def save(self) -> None:
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.ema, self.run_dir / "checkpoint", extra={"step": self.step})
        state = {"config": self.model.config.to_dict(), "model": self.model.state_dict(),
                 "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "generator": self.generator.get_state(), "rng": self.rng.bit_generator.state,
                 "seconds": self.seconds, "device": self.device.type}
        if self.sampler.pair_difficulty is not None:
            state["pair_difficulty"] = self.sampler.pair_difficulty.state()
        partial = self.state_path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.state_path)

    def _update_ema(self) -> None:
        decay = min(self.settings.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for averaged, current in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                averaged.lerp_(current, 1 - decay)

    def train_step(self) -> float:
        settings = self.settings
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(self.step, settings, self.seconds)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(settings.accumulate):
            if self.batches is None:
                batch = self.sampler.batch(settings.batch_size, settings.seconds, self.rng)
                mixture, target, conditioning = PromptSampler.tensors(batch, self.model.config)
            else:
                batch, (mixture, target, conditioning) = [], next(self.batches)
            mixture, target = (values.to(self.device, non_blocking=True) for values in (mixture, target))
            conditioning = conditioning.to(self.device, non_blocking=True)
            mining = {"improvements": {}} if self.sampler.pair_difficulty is not None else {}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bfloat16"):
                loss = self.loss_fn(self.network, mixture, target, conditioning, self.generator, **mining)
            (loss / settings.accumulate).backward()
            if mining:
                self.sampler.record(batch, mining["improvements"])
            total += float(loss.detach()) / settings.accumulate
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        return total

    def finished(self) -> bool:
        """At ``steps``, or past the time budget; under torchrun every rank stops at the same step."""
        done = schedule_progress(self.step, self.settings, self.seconds) >= 1.0
        if self.world > 1 and self.settings.minutes > 0:
            flag = torch.tensor([float(done)], device=self.device)
            distributed.all_reduce(flag, op=distributed.ReduceOp.MAX)
            done = bool(flag.item())
        return done

    def run(self, progress: bool = True) -> dict:
        settings = self.settings
        log_path = self.run_dir / "log.csv"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        new_log = not log_path.exists()
        figures: dict = {}
        with open(log_path, "a", newline="") as handle:
            log = csv.writer(handle)
            if new_log:
                log.writerow(["step", "loss", "learning_rate", "seconds", "si_sdri_extract", "si_sdri_remove"])
            bar = tqdm(total=settings.steps, initial=self.step, disable=not progress or self.rank != 0,
                       desc=f"train ({count_parameters(self.model) / 1e6:.2f} M parameters)")
            started, resumed_at = time.time(), self.seconds
            last = self.finished()
            while not last:
                loss = self.train_step()
                self.seconds = resumed_at + time.time() - started
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                row = [self.step, f"{loss:.5f}", f"{learning_rate_at(self.step, settings, self.seconds):.2e}",
                       f"{time.time() - started:.1f}", "", ""]
                last = self.finished()
                due = self.step % settings.validate_every == 0 or last
                if self.validation and self.rank == 0 and due:
                    figures = validation_figures(self.ema, self.validation, settings.validation_steps)
                    row[4:] = [f"{figures['si_sdri_extract']:.2f}", f"{figures['si_sdri_remove']:.2f}"]
                    bar.write(f"step {self.step}: validation SI-SDRi extract {figures['si_sdri_extract']:+.2f} dB, "
                              f"remove {figures['si_sdri_remove']:+.2f} dB")
                    if self.sampler.pair_difficulty is not None:
                        hardest = ", ".join(f"{target} beside {other} {-difficulty:+.1f} dB"
                                            for target, other, difficulty in self.sampler.pair_difficulty.hardest(5))
                        bar.write(f"step {self.step}: hardest pairs (one-step improvement): {hardest}")
                if self.rank == 0:
                    log.writerow(row)
                    handle.flush()
                if self.step % settings.save_every == 0 or last:
                    self.save()
            bar.close()
        if self.owns_process_group:
            # A process group left to the interpreter's exit can abort it ("terminate called without an
            # active exception" from a communication thread): every rank leaves together, then closes it.
            distributed.barrier()
            distributed.destroy_process_group()
            self.owns_process_group = False
        return figures


def training_device(name: str) -> torch.device:
    """``--device`` as torch names it; under torchrun, "cuda" is the rank's own GPU (LOCAL_RANK)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a torch device name (cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch sees no CUDA device on this machine")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: training runs on cpu or cuda")
    return device


def settings_from(arguments, base: TrainSettings | None = None) -> TrainSettings:
    base = base or TrainSettings()
    chosen = {name: getattr(arguments, name) for name in base.__dataclass_fields__
              if getattr(arguments, name, None) is not None}
    return replace(base, **chosen)
