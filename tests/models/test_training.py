"""Training, resuming, distilling and DDP on a toy source (tones against noise).

Text embeddings here are fixed random vectors per caption, standing in for the sentence
encoder so that these tests need no corpus; the corpus path is exercised by
tests/models/data and the text encoder by test_text_encoder.
"""
import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from samstream.models.checkpoint import checkpoint_metadata, load_checkpoint
from samstream.models.config import ModelConfig, TransformerConfig
from samstream.models.distill import distill, teacher_trajectory
from samstream.models.flow import Conditioning
from samstream.models.metrics import si_sdr
from samstream.models.prompts import PromptSampler
from samstream.models.train import Trainer, TrainSettings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ToyMixture:
    mixture: np.ndarray
    target: np.ndarray
    activity: np.ndarray
    captions: tuple


class ToySource:
    def sample(self, rng, seconds):
        count = int(48000 * seconds)
        time = np.arange(count) / 48000
        tone = sum(np.sin(2 * np.pi * rng.uniform(200, 800) * k * time) / k for k in range(1, 5))
        envelope = np.zeros(count)
        start = int(rng.integers(0, count // 2))
        envelope[start:start + count // 3] = 1
        tone = (0.1 * tone * envelope).astype(np.float32)
        noise = (0.05 * rng.standard_normal(count)).astype(np.float32)
        activity = envelope[::256][:-(-count // 256)]
        return ToyMixture(tone + noise, tone, activity, ("a tone", "whistle"))


def toy_embedding(caption):
    return np.random.default_rng(sum(map(ord, caption))).standard_normal(384).astype(np.float32)


def toy_setup(steps=3):
    config = ModelConfig(transformer=TransformerConfig(width=32, depth=1, heads=2, context_frames=16))
    sampler = PromptSampler(ToySource(), config, toy_embedding)
    validation = [sampler.example(np.random.default_rng(50 + index), 0.5, regime=(True, False, False))
                  for index in range(2)]
    settings = TrainSettings(steps=steps, batch_size=2, seconds=0.5, validate_every=2, save_every=2,
                             warmup_steps=2, validation_steps=2)
    return config, sampler, validation, settings


def test_training_logs_saves_and_resumes_where_it_stopped(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=3)
    first = Trainer(config, settings, tmp_path, sampler, validation)
    figures = first.run(progress=False)
    assert set(figures) == {"si_sdri_extract", "si_sdri_remove"} and all(np.isfinite(list(figures.values())))
    assert checkpoint_metadata(tmp_path / "checkpoint")["step"] == 3
    resumed = Trainer(config, TrainSettings(**{**settings.__dict__, "steps": 5}), tmp_path, sampler, validation)
    assert resumed.step == 3
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                 resumed.model.state_dict().values(), strict=True))
    resumed.run(progress=False)
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5]
    assert rows[1]["si_sdri_extract"] and not rows[0]["si_sdri_extract"]
    assert load_checkpoint(tmp_path / "checkpoint").config == config


def test_resuming_with_another_config_is_refused(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=2)
    Trainer(config, settings, tmp_path, sampler, validation).run(progress=False)
    other = ModelConfig(transformer=TransformerConfig(width=64, depth=1, heads=2, context_frames=16))
    with pytest.raises(ValueError, match="another model config"):
        Trainer(other, settings, tmp_path, sampler, validation)


def test_a_run_saved_before_a_config_field_existed_still_resumes(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=2)
    Trainer(config, settings, tmp_path, sampler, validation).run(progress=False)
    state = torch.load(tmp_path / "training_state.pt", weights_only=False)
    del state["config"]["prompt"]["visual_dim"]  # as a run saved before the field was added
    torch.save(state, tmp_path / "training_state.pt")
    assert Trainer(config, settings, tmp_path, sampler, validation).step == 2


def test_the_loss_falls_on_the_toy_task(tmp_path):
    config, sampler, _, _ = toy_setup()
    settings = TrainSettings(steps=40, batch_size=4, seconds=0.5, validate_every=1000, save_every=1000,
                             warmup_steps=5, learning_rate=2e-3)
    trainer = Trainer(config, settings, tmp_path, sampler, [])
    losses = [trainer.train_step() for _ in range(40)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_teacher_trajectory_records_the_student_step_times():
    config, _, _, _ = toy_setup()
    from samstream.models.transformer import SeparationDiT

    teacher = SeparationDiT(config).eval()
    noise = torch.randn(1, 6, 2 * config.stft.n_bins)
    features = torch.rand(1, 6, config.stft.n_bins)
    recorded, final = teacher_trajectory(teacher, features, Conditioning.empty(config, 1, 6), noise, 16, 2)
    assert [time for time, _ in recorded] == [0.0, 0.5]
    assert torch.equal(recorded[0][1], noise) and final.shape == noise.shape


def test_distillation_writes_a_student_and_reports_teacher_against_student(tmp_path):
    config, sampler, validation, settings = toy_setup(steps=2)
    Trainer(config, settings, tmp_path / "teacher", sampler, validation).run(progress=False)
    report = distill(tmp_path / "teacher" / "checkpoint", tmp_path / "student", 1,
                     TrainSettings(steps=2, batch_size=1, seconds=0.5, warmup_steps=1), sampler, validation,
                     progress=False)
    assert set(report) == {"teacher_16", "teacher_1", "student_1"}
    student = load_checkpoint(tmp_path / "student" / "checkpoint")
    assert student.config.flow.student_steps == 1


def test_distributed_data_parallel_with_torchrun(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from tests.models.test_training import toy_setup\n"
        "from samstream.models.train import Trainer\n"
        "import os; from dataclasses import replace\n"
        "config, sampler, validation, settings = toy_setup(steps=4)\n"
        "rank = int(os.environ['RANK'])\n"
        "# Rank 0's time budget runs out at its first step, rank 1's never: both must stop together.\n"
        "settings = replace(settings, minutes=1e-6 if rank == 0 else 60.0)\n"
        "trainer = Trainer(config, settings, sys.argv[1], sampler, validation)\n"
        "assert trainer.world == 2\n"
        "trainer.run(progress=False)\n"
        "open(os.path.join(sys.argv[1], f'rank{rank}'), 'w').write(str(trainer.step))\n")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", str(script), str(tmp_path / "run"), str(ROOT)],
                            capture_output=True, text=True, timeout=300, env=environment)
    # The workers' own messages come first, torchrun's summary of who failed last: keep both.
    assert result.returncode == 0, result.stderr[:3000] + "\n...\n" + result.stderr[-1500:]
    assert checkpoint_metadata(tmp_path / "run" / "checkpoint")["step"] == 1
    assert (tmp_path / "run" / "rank0").read_text() == (tmp_path / "run" / "rank1").read_text() == "1"


def test_si_sdr_is_scale_invariant_and_penalises_noise():
    reference = np.sin(np.linspace(0, 100, 4800))
    assert si_sdr(0.3 * reference, reference) > 100
    noisy = reference + 0.1 * np.random.default_rng(0).standard_normal(4800)
    assert 15 < si_sdr(noisy, reference) < 20


def test_zero_time_share_puts_that_share_of_the_batch_at_time_zero():
    config, _, _, _ = toy_setup()
    from samstream.models.flow import sample_times, sample_training_times

    assert torch.equal(sample_training_times(64, config, 1.0, torch.Generator().manual_seed(3)), torch.zeros(64))
    plain = sample_times(64, config, torch.Generator().manual_seed(3))
    assert torch.equal(sample_training_times(64, config, 0.0, torch.Generator().manual_seed(3)), plain)
    mixed = sample_training_times(4000, config, 0.5, torch.Generator().manual_seed(3))
    assert 0.45 < float((mixed == 0).float().mean()) < 0.55


def test_power_bin_weights_follow_the_mixture_power_with_mean_one():
    from samstream.models.flow import bin_weights

    magnitude = torch.rand(2, 5, 7) + 0.1
    features = magnitude ** 0.3
    power = bin_weights(features, 0.3, 2.0)
    assert torch.allclose(power.mean(dim=(1, 2)), torch.ones(2), atol=1e-5)
    expected = magnitude ** 2 / (magnitude ** 2).mean(dim=(1, 2), keepdim=True)
    assert torch.allclose(power, expected, rtol=1e-4)
    assert torch.allclose(bin_weights(features, 0.3, None), features / features.mean(dim=(1, 2), keepdim=True))


def test_at_time_zero_the_loss_is_a_regression_the_noise_drops_out_of():
    from samstream.models.flow import flow_matching_loss
    from samstream.models.transformer import SeparationDiT

    config, sampler, _, _ = toy_setup()
    torch.manual_seed(0)
    model = SeparationDiT(config).eval()
    torch.nn.init.normal_(model.head.weight, std=0.01)  # a zero head would predict the same for any input
    batch = sampler.batch(2, 0.5, np.random.default_rng(4))
    mixture, target, conditioning = PromptSampler.tensors(batch, config)
    with torch.no_grad():
        losses = [float(flow_matching_loss(model, mixture, target, conditioning, torch.Generator().manual_seed(seed),
                                           weight_exponent=2.0, zero_time_share=1.0)) for seed in (1, 2)]
        noisy = [float(flow_matching_loss(model, mixture, target, conditioning, torch.Generator().manual_seed(seed)))
                 for seed in (1, 2)]
    assert np.isfinite(losses[0]) and losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert abs(noisy[0] - noisy[1]) > 10 * abs(losses[0] - losses[1])  # elsewhere the noise reaches the network


def network_inputs(config, seed: int, frames: int = 6) -> tuple:
    """Random inputs for the network's forward over a few frames, one example."""
    generator = torch.Generator().manual_seed(seed)
    bins = config.stft.n_bins
    return (torch.rand(1, frames, bins, generator=generator), torch.randn(1, frames, 2 * bins, generator=generator),
            torch.rand(1, generator=generator), torch.randn(1, 384, generator=generator), torch.rand(1, bins),
            torch.ones(1), torch.zeros(1, frames, dtype=torch.long), torch.zeros(1, frames, 16))


def test_a_run_grows_a_detail_head_from_a_checkpoint_and_starts_where_it_was(tmp_path):
    from dataclasses import replace

    from samstream.models.checkpoint import CheckpointError, grow_from
    from samstream.models.transformer import SeparationDiT

    config, sampler, validation, settings = toy_setup(steps=2)
    Trainer(config, settings, tmp_path / "plain", sampler, validation).run(progress=False)
    grown_config = replace(config, transformer=replace(config.transformer, detail_channels=4))
    grown = Trainer(grown_config, settings, tmp_path / "grown", sampler, validation,
                    grow=tmp_path / "plain" / "checkpoint")
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint")
    torch.nn.init.normal_(plain.head.weight, std=0.01)  # so that the output depends on the input at all
    with torch.no_grad():
        grown.model.head.weight.copy_(plain.head.weight)
    inputs = network_inputs(config, seed=2)
    with torch.no_grad():
        assert torch.equal(plain(*inputs), grown.model.eval()(*inputs))  # the new head starts shut
    grown.run(progress=False)  # ...and training opens it
    assert grown.model.detail_mix.weight.abs().sum() > 0
    assert load_checkpoint(tmp_path / "grown" / "checkpoint").config.transformer.detail_channels == 4
    wider = SeparationDiT(replace(config, transformer=replace(config.transformer, width=64)))
    with pytest.raises(CheckpointError, match="cannot grow"):
        grow_from(wider, tmp_path / "plain" / "checkpoint")


def test_a_run_grows_detail_refinements_from_a_detail_checkpoint_and_starts_where_it_was(tmp_path):
    from dataclasses import replace

    config, sampler, validation, settings = toy_setup(steps=2)
    detail_config = replace(config, transformer=replace(config.transformer, detail_channels=4))
    Trainer(detail_config, settings, tmp_path / "detail", sampler, validation).run(progress=False)
    detail = load_checkpoint(tmp_path / "detail" / "checkpoint")
    torch.nn.init.normal_(detail.detail_mix.weight, std=0.05)  # so that the output depends on the channels
    refined_config = replace(detail_config, transformer=replace(detail_config.transformer, detail_blocks=2))
    refined = Trainer(refined_config, settings, tmp_path / "refined", sampler, validation,
                      grow=tmp_path / "detail" / "checkpoint")
    with torch.no_grad():
        refined.model.detail_mix.weight.copy_(detail.detail_mix.weight)
        for block in refined.model.detail_blocks:  # the token's scale and shift matter from the start
            torch.nn.init.normal_(block.film.weight, std=0.05)
    inputs = network_inputs(config, seed=4)
    with torch.no_grad():
        assert torch.equal(detail(*inputs), refined.model.eval()(*inputs))  # the refinements start shut
    refined.run(progress=False)  # ...and training opens them
    assert all(block.contract.weight.abs().sum() > 0 for block in refined.model.detail_blocks)
    assert load_checkpoint(tmp_path / "refined" / "checkpoint").config.transformer.detail_blocks == 2


def test_a_run_grows_blocks_after_the_checkpoints_last_and_starts_where_it_was(tmp_path):
    from dataclasses import replace

    config, sampler, validation, settings = toy_setup(steps=2)
    Trainer(config, settings, tmp_path / "plain", sampler, validation).run(progress=False)
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint")
    torch.nn.init.normal_(plain.head.weight, std=0.01)  # so that the output depends on the blocks at all
    for block in plain.blocks:
        torch.nn.init.normal_(block.modulation.weight, std=0.05)
    deeper_config = replace(config, transformer=replace(config.transformer, depth=config.transformer.depth + 2))
    deeper = Trainer(deeper_config, settings, tmp_path / "deeper", sampler, validation,
                     grow=tmp_path / "plain" / "checkpoint")
    with torch.no_grad():
        deeper.model.head.weight.copy_(plain.head.weight)
        deeper.model.blocks[0].modulation.weight.copy_(plain.blocks[0].modulation.weight)
    inputs = network_inputs(config, seed=3)
    with torch.no_grad():
        assert torch.equal(plain(*inputs), deeper.model.eval()(*inputs))  # the new blocks start as the identity
    deeper.run(progress=False)  # ...and training opens them
    assert deeper.model.blocks[-1].modulation.weight.abs().sum() > 0
    assert load_checkpoint(tmp_path / "deeper" / "checkpoint").config.transformer.depth == config.transformer.depth + 2


def test_a_visual_share_gives_examples_the_target_box_some_without_a_caption():
    config, _, _, _ = toy_setup()
    sampler = PromptSampler(ToySource(), config, toy_embedding, visual_share=1.0)
    examples = [sampler.example(np.random.default_rng(seed), 1.0, regime=(True, False, False)) for seed in range(12)]
    visual = [example for example in examples if np.abs(example.conditioning["visual"]).sum() > 0]
    assert len(visual) == len(examples)  # every toy clip has a sounding target
    alone = [example for example in visual if not example.conditioning["text"].any()]
    assert 0 < len(alone) < len(visual) and all(example.caption == "" for example in alone)
    frames = -(-int(48000 * 1.0) // config.stft.hop)
    assert examples[0].conditioning["visual"].shape == (frames, config.prompt.visual_dim)
    plain = PromptSampler(ToySource(), config, toy_embedding)
    assert not plain.example(np.random.default_rng(0), 1.0).conditioning["visual"].any()


def test_the_distortion_term_is_the_estimate_error_in_db_as_the_waveform_measures_it():
    from samstream.models.flow import DISTORTION_FLOOR, distortion_db, spectra
    from samstream.models.torch_dsp import istft

    config, sampler, _, _ = toy_setup()
    example = sampler.batch(1, 0.5, np.random.default_rng(7))[0]
    mixture, target = (torch.from_numpy(signal[None]) for signal in (example.mixture, example.target))
    mix_spec, target_spec = spectra(mixture, config), spectra(target, config)
    # A mask smooth in time and frequency, as a trained model's is: a random one is far from any
    # STFT of a signal, and the inverse STFT's projection would hide part of its error.
    frames, bins = mix_spec.shape[1], config.stft.n_bins
    mask = 0.5 + 0.4 * torch.sin(torch.arange(frames)[:, None] / 7.0) * torch.cos(torch.arange(bins)[None] / 40.0)
    mask = mask[None].float()
    masked = torch.complex(mix_spec[..., 0, :], mix_spec[..., 1, :]) * mask
    estimate = istft(masked.transpose(-1, -2), config.stft.n_fft, config.stft.hop, mixture.shape[-1])
    # Over the inner part, away from the edges the STFT's frames only half cover.
    inner = slice(config.stft.n_fft, -config.stft.n_fft)
    error = float(((estimate - target)[0, inner] ** 2).sum()) / float((mixture[0, inner] ** 2).sum())
    assert float(distortion_db(mask, mix_spec, target_spec)[0]) == pytest.approx(10 * np.log10(error), abs=0.3)
    # A perfect estimate stops at the floor instead of at minus infinity.
    perfect = float(distortion_db(torch.ones_like(mask), mix_spec, mix_spec)[0])
    assert perfect == pytest.approx(10 * np.log10(DISTORTION_FLOOR), abs=1e-3)


def test_a_distortion_weight_adds_the_one_step_estimates_error_in_db_to_the_loss():
    from samstream.models.flow import flow_matching_loss
    from samstream.models.transformer import SeparationDiT

    config, sampler, _, _ = toy_setup()
    torch.manual_seed(0)
    model = SeparationDiT(config)
    torch.nn.init.normal_(model.head.weight, std=0.01)
    batch = sampler.batch(2, 0.5, np.random.default_rng(4))
    mixture, target, conditioning = PromptSampler.tensors(batch, config)

    def loss(weight, zero_share):
        return flow_matching_loss(model, mixture, target, conditioning, torch.Generator().manual_seed(1),
                                  weight_exponent=2.0, zero_time_share=zero_share, distortion_weight=weight)

    with torch.no_grad():
        plain, weighted, doubled = float(loss(0.0, 1.0)), float(loss(0.5, 1.0)), float(loss(1.0, 1.0))
        assert weighted != plain and doubled - plain == pytest.approx(2 * (weighted - plain), rel=1e-4)
        assert float(loss(1.0, 0.0)) == pytest.approx(float(loss(0.0, 0.0)))  # no row at t = 0: no term
    model.zero_grad()
    loss(1.0, 1.0).backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_training_hands_each_one_step_improvement_to_the_hard_pair_miner_and_resumes_it(tmp_path):
    from dataclasses import replace

    from samstream.models.data.hard_pairs import PairDifficulty

    class ClassedToySource(ToySource):
        """Tones against noise, told apart as two classes, the noise's drawn by a miner."""

        def __init__(self):
            self.pair_difficulty = PairDifficulty(["tone", "noise"])

        def sample(self, rng, seconds):
            mixture = super().sample(rng, seconds)
            mixture.classes = ("tone", ("noise",))
            return mixture

    config, _, validation, settings = toy_setup(steps=2)
    settings = replace(settings, zero_time_share=1.0)
    source = ClassedToySource()
    trainer = Trainer(config, settings, tmp_path, PromptSampler(source, config, toy_embedding), validation)
    trainer.run(progress=False)
    assert source.pair_difficulty.measured[0, 1] and not source.pair_difficulty.measured[1, 0]
    learned = source.pair_difficulty.difficulty[0, 1]
    assert np.isfinite(learned) and learned != 0.0
    fresh = ClassedToySource()
    Trainer(config, replace(settings, steps=2), tmp_path, PromptSampler(fresh, config, toy_embedding), validation)
    assert fresh.pair_difficulty.difficulty[0, 1] == pytest.approx(learned)
