"""`samstream distill`: a 1- or 2-step student from the multi-step teacher (training half).

Method: trajectory distillation. For a batch, the teacher integrates its flow from fresh
noise in ``teacher_steps`` Euler steps and records its state at the student's step
times (0, and 0.5 for two steps); the student, initialised from the teacher, is trained
so that one Euler step of its own from each recorded state lands where the teacher's
remaining steps land. Because the network is a denoiser, a student step from time t is
its clean estimate, so this is a regression of the teacher's endpoint from the teacher's
own intermediate states: nothing to tune but the learning rate, and the student never
drifts onto states the teacher does not visit.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .flow import Conditioning, consistent_target_mask, lookahead_align, spectra
from .prompts import PromptSampler
from .train import TrainSettings, learning_rate_at, validation_figures
from .transformer import SeparationDiT, mixture_features


def teacher_trajectory(teacher: SeparationDiT, features: torch.Tensor, conditioning: Conditioning,
                       noise: torch.Tensor, teacher_steps: int, student_steps: int):
    """-> (states at the student's step times, the teacher's final state)."""
    checkpoints = {round(index * teacher_steps / student_steps) for index in range(student_steps)}
    state, recorded = noise, []
    with torch.no_grad():
        for index in range(teacher_steps):
            if index in checkpoints:
                recorded.append((index / teacher_steps, state.clone()))
            time = torch.full((noise.shape[0],), index / teacher_steps)
            state = state + teacher(features, state, time, conditioning.text, conditioning.example_features,
                                    conditioning.has_example, conditioning.anchors, conditioning.visual) / teacher_steps
    return recorded, state


def distillation_loss(student: SeparationDiT, teacher: SeparationDiT, mixture: torch.Tensor,
                      conditioning: Conditioning, student_steps: int, generator=None) -> torch.Tensor:
    config = student.config
    spectrum = spectra(mixture, config)
    features = lookahead_align(mixture_features(spectrum, config.transformer.compression),
                               config.transformer.lookahead_frames)
    conditioning = conditioning.fitted(features.shape[1])
    noise = torch.randn(*features.shape[:2], 2 * features.shape[2], generator=generator)
    recorded, final = teacher_trajectory(teacher, features, conditioning, noise, config.flow.teacher_steps,
                                         student_steps)
    weight = features / (features.mean(dim=(1, 2), keepdim=True) + 1e-8)
    loss = 0.0
    for time_value, state in recorded:
        time = torch.full((noise.shape[0],), time_value)
        velocity = student(features, state, time, conditioning.text, conditioning.example_features,
                           conditioning.has_example, conditioning.anchors, conditioning.visual)
        denoised = state + (1 - time_value) * velocity
        error = consistent_target_mask(denoised) - consistent_target_mask(final)
        loss = loss + (error ** 2 * weight).mean()
    return loss / len(recorded)


def distill(teacher_dir: Path, run_dir: Path, student_steps: int, settings: TrainSettings,
            sampler: PromptSampler, validation: list, progress: bool = True) -> dict:
    from tqdm import tqdm

    if student_steps not in (1, 2):
        raise ValueError(f"a student takes 1 or 2 steps, not {student_steps}")
    teacher = load_checkpoint(teacher_dir)
    student = copy.deepcopy(teacher).train()
    student.config = replace(student.config, flow=replace(student.config.flow, student_steps=student_steps))
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    bar = tqdm(range(settings.steps), disable=not progress, desc=f"distill to {student_steps} step(s)")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, settings)
        batch = sampler.batch(settings.batch_size, settings.seconds, rng)
        mixture, _, conditioning = PromptSampler.tensors(batch, student.config)
        loss = distillation_loss(student, teacher, mixture, conditioning, student_steps, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    student.eval()
    save_checkpoint(student, Path(run_dir) / "checkpoint", extra={"distilled_steps": student_steps})
    report = {"teacher_16": validation_figures(teacher, validation, teacher.config.flow.teacher_steps),
              f"teacher_{student_steps}": validation_figures(teacher, validation, student_steps),
              f"student_{student_steps}": validation_figures(student, validation, student_steps)}
    return report
