"""Training batches drawn beside the training loop, by worker processes.

One CPU core draws a batch of eight 2 s examples (sources read and cut, EQ, rooms,
prompts, drawn clips) in about 0.16 s. That is a fifth of a training step on the 2-core
machine, but a GPU takes a step in a few milliseconds and would wait on one core. So with
``workers`` > 0 the batches come from a ``torch.utils.data.DataLoader`` whose processes each
draw from their own random stream, seeded by (seed, rank, worker, the step the loader
started at): a resumed run draws new examples rather than those it already saw. Only the
in-process draw (``workers`` 0) resumes the exact order of examples.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .flow import Conditioning
from .prompts import PromptSampler

Batch = tuple[torch.Tensor, torch.Tensor, Conditioning]


@dataclass
class DrawnBatches(IterableDataset):
    """An endless stream of (mixture, target, conditioning) batches from one worker's random stream."""

    sampler: PromptSampler
    batch_size: int
    seconds: float
    seed: int
    rank: int
    first_step: int

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, worker.id if worker else 0, self.first_step])
        while True:
            examples = self.sampler.batch(self.batch_size, self.seconds, rng)
            yield PromptSampler.tensors(examples, self.sampler.config)


def worker_batches(sampler: PromptSampler, batch_size: int, seconds: float, *, workers: int, seed: int,
                   rank: int, first_step: int, pin_memory: bool) -> Iterator[Batch]:
    """Batches from ``workers`` processes, each a whole batch (the loader does not collate)."""
    if workers < 1:
        raise ValueError(f"worker_batches needs at least one worker, got {workers}")
    if sampler.pair_difficulty is not None:
        raise ValueError("hard-pair mining learns from the training loop's own draws; use it without --workers")
    dataset = DrawnBatches(sampler, batch_size, seconds, seed, rank, first_step)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=4, persistent_workers=True)
    return iter(loader)
