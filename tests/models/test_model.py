"""The DiT streamed hop by hop (torch and ONNX Runtime) equals the DiT over whole sequences."""
import json

import numpy as np
import pytest
import torch

from samstream.kernels.level import level_normalised
from samstream.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from samstream.models.config import ModelConfig, TransformerConfig
from samstream.models.export import export_model_dir
from samstream.models.flow import Conditioning, generate_masks, spectra
from samstream.models.runtime import ModelFolderError, OnnxSeparator, Prompt
from samstream.models.transformer import SeparationDiT
from samstream.stream.engine import StftEngine
from samstream.stream.offline import fixed_blocks, render_streamed
from samstream.stream.scheduler import BlockScheduler


def tiny_config(lookahead=0, context=8, detail=0, refinements=0):
    return ModelConfig(transformer=TransformerConfig(width=32, depth=2, heads=2, context_frames=context,
                                                     lookahead_frames=lookahead, detail_channels=detail,
                                                     detail_blocks=refinements))


def randomised(config, seed=0):
    """A model whose zero-initialised parts are opened, so every path carries signal."""
    torch.manual_seed(seed)
    model = SeparationDiT(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model.eval()


def stream_with_torch(model, features, state, time, conditioning):
    config = model.config.transformer
    batch, frames, _ = features.shape
    shape = (batch, config.depth, config.heads, config.context_frames, model.head_dim)
    keys, values = torch.zeros(shape), torch.zeros(shape)
    condition = model.condition(time, conditioning.text, conditioning.example_features, conditioning.has_example)
    modulations = model.modulations(condition)
    outputs, slot = [], 0
    for frame in range(frames):
        ages = (slot - torch.arange(config.context_frames) - 1) % config.context_frames + 1
        seen = torch.full((batch,), min(frame, config.context_frames))
        estimate, key, value = model.step(features[:, frame], state[:, frame], time, modulations,
                                          conditioning.anchors[:, frame], conditioning.visual[:, frame],
                                          keys, values, ages, seen)
        keys[:, :, :, slot], values[:, :, :, slot] = key, value
        slot = (slot + 1) % config.context_frames
        outputs.append(model.velocity(estimate, state[:, frame], time))
    return torch.stack(outputs, 1)


def random_conditioning(config, batch, frames, generator):
    return Conditioning(torch.randn(batch, config.prompt.text_dim, generator=generator),
                        torch.rand(batch, config.stft.n_bins, generator=generator), torch.tensor([1.0, 0.0])[:batch],
                        torch.randint(0, 3, (batch, frames), generator=generator),
                        torch.randn(batch, frames, config.prompt.visual_dim, generator=generator))


@pytest.mark.parametrize("context,detail,refinements", [(4, 0, 0), (8, 0, 0), (40, 0, 0), (8, 4, 0), (8, 4, 2)])
def test_cached_steps_equal_the_whole_sequence_even_after_the_cache_wraps(context, detail, refinements):
    config = tiny_config(context=context, detail=detail, refinements=refinements)
    model = randomised(config)
    generator = torch.Generator().manual_seed(1)
    batch, frames, bins = 2, 30, config.stft.n_bins
    features = torch.rand(batch, frames, bins, generator=generator)
    state = torch.randn(batch, frames, 2 * bins, generator=generator)
    time = torch.rand(batch, generator=generator)
    conditioning = random_conditioning(config, batch, frames, generator)
    with torch.no_grad():
        whole = model(features, state, time, conditioning.text, conditioning.example_features,
                      conditioning.has_example, conditioning.anchors, conditioning.visual)
        streamed = stream_with_torch(model, features, state, time, conditioning)
    assert (whole - streamed).abs().max() < 1e-4 * whole.abs().max()


@pytest.fixture(scope="module", params=[(0, 0, 0), (2, 0, 0), (0, 4, 2)],
                ids=["no-lookahead", "lookahead-2", "refined-detail-head"])
def exported(request, tmp_path_factory):
    lookahead, detail, refinements = request.param
    config = tiny_config(lookahead=lookahead, detail=detail, refinements=refinements)
    model = randomised(config, seed=lookahead + detail)
    folder = tmp_path_factory.mktemp(f"model{lookahead}_{detail}")
    save_checkpoint(model, folder / "checkpoint")
    for steps in (1, 2):
        export_model_dir(folder / "checkpoint", folder / "serving", steps)
    return model, folder


@pytest.mark.parametrize("steps", [1, 2])
def test_onnx_live_path_equals_torch_offline_generation(exported, steps):
    """The whole live path (scheduler, STFT, ONNX hop, mask, ISTFT) against torch on the file."""
    model, folder = exported
    config = model.config
    hop = config.stft.hop
    separator = OnnxSeparator(folder / "serving", steps=steps, seed=3)
    text = np.random.default_rng(0).standard_normal(config.prompt.text_dim).astype(np.float32)
    separator.set_prompt(Prompt(text_embedding=text))
    engine = StftEngine(config.stft.n_fft, hop, model=separator)
    noises, masks = [], []
    original_process = separator.process

    def recording_process(spectrum_in, spectrum_out):
        frame = separator._frame
        original_process(spectrum_in, spectrum_out)
        if frame >= separator.lookahead_frames:
            noises.append(separator.buffers["noise"].copy())
            masks.append(separator.outputs["target_mask"].copy())

    scheduler = BlockScheduler(engine, host_block=hop)
    scheduler.configure(48000, hop, 1)
    separator.process = recording_process  # after configure's warm-up hop
    signal = (np.random.default_rng(1).standard_normal((1, hop * 24)) * 0.1).astype(np.float32)
    render_streamed(scheduler, signal, fixed_blocks(hop))

    # Hop t computes the token of frame t - lookahead; the first tokens come after `lookahead` hops.
    lookahead = config.transformer.lookahead_frames
    frames = len(masks) + lookahead
    spectrum = spectra(torch.from_numpy(signal), config)[:, :frames]
    # The model hears the frames at its input level (kernels.level), from the stream's first frame.
    spectrum = torch.from_numpy(level_normalised(spectrum[0].numpy(), config.level_parameters()))[None]
    conditioning = Conditioning.empty(config, 1, frames)
    conditioning.text = torch.from_numpy(text)[None]
    noise = np.concatenate([*noises, np.zeros((lookahead, noises[0].shape[1]), np.float32)])
    reference = generate_masks(model, spectrum, conditioning, steps, noise=torch.from_numpy(noise)[None])
    streamed = np.concatenate(masks)
    assert np.abs(streamed - reference[0, :len(masks)].numpy()).max() <= 1e-4
    assert scheduler.latency_samples == config.latency_samples


def test_the_int8_hop_graph_streams_close_to_float32_and_is_named_in_the_manifest(exported):
    model, folder = exported
    config = model.config
    text = np.random.default_rng(0).standard_normal(config.prompt.text_dim).astype(np.float32)
    signal = (np.random.default_rng(4).standard_normal((1, config.stft.hop * 40)) * 0.1).astype(np.float32)
    outputs = {}
    for variant in ("fp32", "int8"):
        separator = OnnxSeparator(folder / "serving", steps=1, variant=variant)
        separator.set_prompt(Prompt(text_embedding=text))
        scheduler = BlockScheduler(StftEngine(config.stft.n_fft, config.stft.hop, model=separator), host_block=128)
        scheduler.configure(48000, 128, 1)
        outputs[variant] = render_streamed(scheduler, signal, fixed_blocks(128))
    difference = np.abs(outputs["int8"] - outputs["fp32"]).max()
    assert 0 < difference < 0.05 * np.abs(signal).max(), difference
    with pytest.raises(ModelFolderError, match="variant must be one of"):
        OnnxSeparator(folder / "serving", steps=1, variant="fp16")


def test_an_empty_prompt_passes_the_audio_through_and_says_so(exported):
    model, folder = exported
    separator = OnnxSeparator(folder / "serving", steps=1)
    config = model.config
    scheduler = BlockScheduler(StftEngine(config.stft.n_fft, config.stft.hop, model=separator))
    scheduler.configure(48000, 512, 2)
    signal = np.random.default_rng(2).uniform(-0.5, 0.5, (2, 8192)).astype(np.float32)
    output = render_streamed(scheduler, signal, fixed_blocks(300))
    assert separator.passing_through
    latency = scheduler.latency_samples
    assert np.abs(output[:, latency:] - signal[:, :-latency]).max() < 1e-5


def test_silence_in_gives_silence_out(exported):
    model, folder = exported
    separator = OnnxSeparator(folder / "serving", steps=2)
    separator.set_prompt(Prompt(text_embedding=np.ones(model.config.prompt.text_dim, np.float32) / 20))
    scheduler = BlockScheduler(StftEngine(model.config.stft.n_fft, model.config.stft.hop, model=separator))
    scheduler.configure(48000, 256, 1)
    output = render_streamed(scheduler, np.zeros((1, 6000), np.float32), fixed_blocks(256))
    assert not separator.passing_through and np.abs(output).max() == 0


def test_the_visual_input_is_gated_shut_until_trained():
    """No visual encoder exists yet: a fixed embedding must change nothing at initialisation."""
    config = tiny_config()
    model = SeparationDiT(config).eval()
    generator = torch.Generator().manual_seed(4)
    features = torch.rand(1, 12, config.stft.n_bins, generator=generator)
    state = torch.randn(1, 12, 2 * config.stft.n_bins, generator=generator)
    conditioning = random_conditioning(config, 1, 12, generator)
    with torch.no_grad():
        for block in model.blocks:  # open everything but the gates under test
            block.modulation.bias.normal_(0, 0.5, generator=generator)
        model.head.weight.normal_(0, 0.05, generator=generator)
        arguments = (features, state, torch.tensor([0.3]), conditioning.text, conditioning.example_features,
                     conditioning.has_example, conditioning.anchors)
        fixed = torch.full_like(conditioning.visual, 0.7)
        shut = model(*arguments, fixed) - model(*arguments, torch.zeros_like(fixed))
        model.visual_gate.fill_(1.0)
        opened = model(*arguments, fixed) - model(*arguments, torch.zeros_like(fixed))
    assert shut.abs().max() == 0 and opened.abs().max() > 1e-3


def test_checkpoints_round_trip_and_bad_ones_name_the_file(tmp_path):
    config = tiny_config()
    model = randomised(config)
    save_checkpoint(model, tmp_path / "good")
    loaded = load_checkpoint(tmp_path / "good")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    (tmp_path / "corrupt").mkdir()
    config.save(tmp_path / "corrupt" / "config.json")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="corrupt/model.safetensors"):
        load_checkpoint(tmp_path / "corrupt")
    save_checkpoint(randomised(tiny_config(context=16)), tmp_path / "other")
    (tmp_path / "good" / "config.json").write_text((tmp_path / "other" / "config.json").read_text())
    save_checkpoint(SeparationDiT(ModelConfig(transformer=TransformerConfig(width=64, depth=1, heads=2))),
                    tmp_path / "mismatch")
    (tmp_path / "mismatch" / "config.json").write_text((tmp_path / "other" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="mismatch/model.safetensors: does not match"):
        load_checkpoint(tmp_path / "mismatch")
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_broken_serving_folder_is_refused_naming_the_file(tmp_path, exported):
    with pytest.raises(ModelFolderError, match="config.json: missing"):
        OnnxSeparator(tmp_path)
    _, folder = exported
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "serving.json"):
        (broken / name).write_text((folder / "serving" / name).read_text())
    (broken / "hop_1.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelFolderError, match="hop_1.onnx: not a loadable ONNX model"):
        OnnxSeparator(broken, steps=1)
    with pytest.raises(ModelFolderError, match="no fp32 hop graph for 3 steps"):
        OnnxSeparator(folder / "serving", steps=3)
    # A folder exported before the prompt left the hop graph: one line naming it, and the fix.
    older = tmp_path / "older"
    older.mkdir()
    (older / "config.json").write_text((folder / "serving" / "config.json").read_text())
    manifest = json.loads((folder / "serving" / "serving.json").read_text())
    (older / "serving.json").write_text(json.dumps({key: value for key, value in manifest.items() if key != "format"}))
    with pytest.raises(ModelFolderError, match=r"older/serving.json: graphs of format 1, .*\(re-export"):
        OnnxSeparator(older)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_prompt_is_conditioned_once_when_set_and_no_hop_computes_it(exported, steps):
    model, folder = exported
    config = model.config
    separator = OnnxSeparator(folder / "serving", steps=steps)
    inputs = {node.name for node in separator.session.get_inputs()}
    assert "conditioning" in inputs and not inputs & {"text", "example_features", "has_example"}
    assert ("noise" in inputs) == (steps > 1)  # one step from t = 0 needs no noise
    calls = []
    rows = separator.conditioner.rows
    separator.conditioner.rows = lambda prompt: calls.append(prompt) or rows(prompt)
    text = np.random.default_rng(5).standard_normal(config.prompt.text_dim).astype(np.float32)
    separator.set_prompt(Prompt(text_embedding=text))
    scheduler = BlockScheduler(StftEngine(config.stft.n_fft, config.stft.hop, model=separator))
    scheduler.configure(48000, 256, 1)
    render_streamed(scheduler, (np.random.default_rng(6).standard_normal((1, 256 * 30)) * 0.1).astype(np.float32),
                    fixed_blocks(256))
    assert len(calls) == 1
    # The rows the hop reads are torch's modulations of that prompt at each step's time.
    with torch.no_grad():
        expected = torch.stack([model.modulations(model.condition(
            torch.tensor([index / steps]), torch.from_numpy(text)[None], torch.zeros(1, config.stft.n_bins),
            torch.zeros(1))) for index in range(steps)]).numpy()
    assert np.abs(separator.buffers["conditioning"] - expected).max() < 1e-5


def test_samstream_average_writes_the_mean_of_one_runs_checkpoints_and_refuses_another_model(tmp_path):
    import subprocess
    import sys

    config = tiny_config(detail=4, refinements=1)
    for seed in (1, 2, 3):
        save_checkpoint(randomised(config, seed=seed), tmp_path / f"step{seed}")
    command = [sys.executable, "-m", "samstream.plugin_host.cli", "average",
               *(str(tmp_path / f"step{seed}") for seed in (1, 2, 3)), "--out", str(tmp_path / "mean")]
    subprocess.run(command, check=True, capture_output=True)
    weights = [load_checkpoint(tmp_path / f"step{seed}").state_dict() for seed in (1, 2, 3)]
    averaged = load_checkpoint(tmp_path / "mean")
    assert averaged.config == config
    for name, value in averaged.state_dict().items():
        assert torch.allclose(value, sum(weight[name] for weight in weights) / 3, atol=1e-7), name
    assert not torch.equal(averaged.state_dict()["head.weight"], weights[0]["head.weight"])

    save_checkpoint(randomised(tiny_config(detail=4)), tmp_path / "other")
    refused = subprocess.run([*command[:-2], str(tmp_path / "other"), "--out", str(tmp_path / "bad")],
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "other/config.json: another model" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_detail_refinements_without_a_detail_head_are_refused():
    with pytest.raises(ValueError, match="give detail_channels"):
        SeparationDiT(tiny_config(refinements=1))
