"""What a GPU run needs from the trainer, checked on this CPU machine: batches drawn by worker
processes, a wall-clock budget, the network under bfloat16 autocast, and a clear refusal of
a device that is not there. The CUDA path itself runs only where a GPU is (the device
script, scripts/device_train.sh); here it is the same code on torch's CPU device."""
import csv

import numpy as np
import pytest
import torch

from samstream.models.batches import DrawnBatches, worker_batches
from samstream.models.checkpoint import checkpoint_metadata, load_checkpoint
from samstream.models.train import Trainer, TrainSettings, learning_rate_at, schedule_progress
from tests.models.test_training import toy_setup


def batch_digest(batch):
    mixture, _, conditioning = batch
    return float(mixture.sum()), float(conditioning.text.sum())


def test_worker_processes_each_draw_their_own_examples_and_a_resumed_loader_draws_new_ones():
    _, sampler, _, _ = toy_setup()
    batches = worker_batches(sampler, 2, 0.5, workers=2, seed=0, rank=0, first_step=0, pin_memory=False)
    drawn = [next(batches) for _ in range(4)]
    mixture, target, conditioning = drawn[0]
    assert mixture.shape == target.shape == (2, 24000) and conditioning.text.shape == (2, 384)
    assert len({batch_digest(batch) for batch in drawn}) == 4  # the two workers do not repeat each other
    resumed = worker_batches(sampler, 2, 0.5, workers=2, seed=0, rank=0, first_step=100, pin_memory=False)
    assert not {batch_digest(next(resumed)) for _ in range(4)} & {batch_digest(batch) for batch in drawn}
    # The same (seed, rank, worker, first step) draws the same stream: a worker's examples are reproducible.
    again = iter(DrawnBatches(sampler, 2, 0.5, seed=0, rank=0, first_step=0))
    assert torch.equal(next(again)[0], next(iter(DrawnBatches(sampler, 2, 0.5, 0, 0, 0)))[0])


def test_training_with_workers_trains_and_saves(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=3)
    trainer = Trainer(config, TrainSettings(**{**settings.__dict__, "workers": 2}), tmp_path, sampler, validation)
    before = [value.clone() for value in trainer.model.parameters()]
    trainer.run(progress=False)
    assert checkpoint_metadata(tmp_path / "checkpoint")["step"] == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_hard_pair_mining_with_workers_is_refused():
    _, sampler, _, _ = toy_setup()
    sampler.source.pair_difficulty = object()  # any miner: it learns from the loop's own draws
    with pytest.raises(ValueError, match="without --workers"):
        worker_batches(sampler, 2, 0.5, workers=1, seed=0, rank=0, first_step=0, pin_memory=False)


def test_the_schedule_follows_the_time_budget_when_it_comes_first():
    settings = TrainSettings(steps=1000, minutes=2.0, warmup_steps=1, learning_rate=1e-3)
    assert schedule_progress(100, settings, seconds=60.0) == pytest.approx(0.5)  # time ahead of steps
    assert schedule_progress(900, settings, seconds=60.0) == pytest.approx(0.9)  # steps ahead of time
    assert learning_rate_at(10, settings, seconds=120.0) == pytest.approx(1e-4)  # the cosine's floor
    assert schedule_progress(100, TrainSettings(steps=1000), seconds=1e6) == pytest.approx(0.1)  # no budget


def test_a_run_stops_at_its_time_budget_saves_and_resumes_the_clock(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=100000)
    budget = TrainSettings(**{**settings.__dict__, "minutes": 0.05, "validate_every": 100000})
    trainer = Trainer(config, budget, tmp_path, sampler, validation)
    trainer.run(progress=False)
    stopped = trainer.step
    assert 0 < stopped < 100000 and trainer.seconds >= 3.0
    assert checkpoint_metadata(tmp_path / "checkpoint")["step"] == stopped
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["learning_rate"]) == pytest.approx(0.1 * budget.learning_rate, rel=0.05)
    assert rows[-1]["si_sdri_extract"]  # the last step validates, as the last step of a run by steps does
    resumed = Trainer(config, budget, tmp_path, sampler, validation)
    assert resumed.seconds == pytest.approx(trainer.seconds) and resumed.finished()


def test_bfloat16_autocast_trains_with_float32_weights(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=2)
    trainer = Trainer(config, TrainSettings(**{**settings.__dict__, "precision": "bfloat16"}), tmp_path, sampler,
                      validation)
    losses = [trainer.train_step() for _ in range(2)]
    assert np.isfinite(losses).all()
    assert all(value.dtype == torch.float32 for value in trainer.model.parameters())
    trainer.save()
    assert load_checkpoint(tmp_path / "checkpoint").config == config


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_missing_or_unknown_device_is_refused_with_one_clear_error(tmp_path):
    config, sampler, validation, settings = toy_setup()
    for name, message in (("cuda", "sees no CUDA device"), ("tpu0", "not a torch device name"),
                          ("meta", "training runs on cpu or cuda")):
        with pytest.raises(ValueError, match=message):
            Trainer(config, TrainSettings(**{**settings.__dict__, "device": name}), tmp_path, sampler, validation)
    with pytest.raises(ValueError, match="--precision"):
        Trainer(config, TrainSettings(**{**settings.__dict__, "precision": "float16"}), tmp_path, sampler, validation)
    with pytest.raises(ValueError, match="--zero-time-share"):
        Trainer(config, TrainSettings(**{**settings.__dict__, "zero_time_share": 1.5}), tmp_path, sampler, validation)
    with pytest.raises(ValueError, match="must not be negative"):
        Trainer(config, TrainSettings(**{**settings.__dict__, "workers": -1}), tmp_path, sampler, validation)
