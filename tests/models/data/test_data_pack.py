"""``samstream data pack``: the real command on a real corpus, read back by the real mixture sampler."""
import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from samstream.models.data.manifest import read_manifest
from samstream.models.data.mixtures import MixtureConfig, MixtureSampler


def samstream(*arguments):
    return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", *arguments],
                          capture_output=True, text=True)


def test_a_packed_corpus_keeps_every_class_within_its_budget_and_trains_like_the_rendered_one(tone_corpus, tmp_path):
    root, entries = tone_corpus
    out = tmp_path / "packed"
    done = samstream("data", "pack", "--root", root, "--out", str(out), "--max-mb", "0.02",
                     "--seconds-per-file", "4")
    assert done.returncode == 0, done.stderr
    packed = read_manifest(str(out / "manifest.jsonl"))
    assert {entry.cls for entry in packed} == {entry.cls for entry in entries}  # round-robin: every class
    assert all(entry.split == "train" and entry.path.endswith(".ogg") for entry in packed)
    sizes = [os.path.getsize(out / entry.path) for entry in packed]
    assert sum(sizes) - max(sizes) < 0.02e6  # stops once the budget is spent
    originals = {entry.cls: entry for entry in entries if entry.split == "train" and entry.frames > 4 * 48000}
    for entry in packed:
        info = sf.info(str(out / entry.path))
        assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 48000)
        assert entry.frames == info.frames <= 4 * 48000
        if entry.cls in originals and entry.frames == 4 * 48000:  # a cut of the long source, not a copy of silence
            audio, _ = sf.read(str(out / entry.path), dtype="float32")
            source, _ = sf.read(os.path.join(root, originals[entry.cls].path), frames=entry.frames, dtype="float32")
            assert abs(np.sqrt(np.mean(audio ** 2)) / np.sqrt(np.mean(source ** 2)) - 1) < 0.1
    mixture = MixtureSampler(packed, str(out), MixtureConfig(seconds=2.0), seed=1).sample(0)
    assert mixture.mixture.shape == (96000,) and np.isfinite(mixture.mixture).all() and mixture.target.any()


def test_packing_without_training_sources_or_into_the_corpus_says_why(tone_corpus, tmp_path):
    root, entries = tone_corpus
    refused = samstream("data", "pack", "--root", root, "--out", root)
    assert refused.returncode != 0 and "pack into another folder" in refused.stderr
    assert "Traceback" not in refused.stderr
    (tmp_path / "val_only").mkdir()
    with open(tmp_path / "val_only" / "manifest.jsonl", "w") as handle:
        for entry in entries:
            if entry.split == "val":
                handle.write(json.dumps(entry.to_json()) + "\n")
    refused = samstream("data", "pack", "--root", str(tmp_path / "val_only"), "--out", str(tmp_path / "out"))
    assert refused.returncode != 0 and "no training sources to pack" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_packed_corpus_carries_its_caption_embeddings_and_trains_without_the_text_encoder(tone_corpus, tmp_path):
    from samstream.models.caption_embeddings import FILE_NAME, CaptionEmbeddings
    from samstream.models.text_encoder import TextEncoder

    root, _ = tone_corpus
    out = tmp_path / "packed"
    done = samstream("data", "pack", "--root", root, "--out", str(out), "--max-mb", "0.02", "--seconds-per-file", "4")
    assert done.returncode == 0, done.stderr
    stored = CaptionEmbeddings.load(out / FILE_NAME)
    encoder = TextEncoder.load()
    captions = {caption for entry in read_manifest(str(out / "manifest.jsonl")) for caption in entry.captions}
    assert set(stored.table) == captions
    for caption in captions:
        np.testing.assert_allclose(stored(caption), encoder.encode(caption), atol=1e-6)
    # A machine without the encoder's files trains on it: batches from a worker process, a time budget.
    run = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "samstream.plugin_host.cli", "train", "--data", str(out), "--run", str(run),
         "--preset", "small", "--steps", "2", "--batch-size", "2", "--seconds", "1", "--workers", "1",
         "--minutes", "30", "--validation", "0", "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "SAMSTREAM_TEXT_ENCODER_DIR": str(tmp_path / "none")})
    assert trained.returncode == 0, trained.stderr
    assert f"caption embeddings: {len(captions)} from" in trained.stdout
    assert (run / "checkpoint" / "model.safetensors").exists()


def test_a_caption_the_file_lacks_or_a_file_that_is_not_one_gives_one_clear_error(tmp_path):
    from samstream.models.caption_embeddings import CaptionEmbeddings, write_caption_embeddings

    path = tmp_path / "captions.npz"
    count = write_caption_embeddings(path, ["a dog", "a dog", "rain"], lambda text: np.full(4, len(text), np.float32),
                                     "toy")
    stored = CaptionEmbeddings.load(path)
    assert count == 2 and stored.encoder_id == "toy" and stored("rain").tolist() == [4.0] * 4
    try:
        stored("a cat")
        raise AssertionError("an unknown caption was embedded")
    except ValueError as error:
        assert str(path) in str(error) and "'a cat'" in str(error)
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    try:
        CaptionEmbeddings.load(tmp_path / "bad.npz")
        raise AssertionError("a bad file was read")
    except ValueError as error:
        assert "not a caption-embedding file" in str(error)


def test_the_device_training_script_trains_on_a_packed_corpus_and_leaves_its_checkpoint(tone_corpus, tmp_path):
    """scripts/device_train.sh as a GPU machine runs it, here on the CPU (SAMSTREAM_DEVICE=cpu)."""
    from samstream.models.checkpoint import checkpoint_metadata, load_checkpoint

    root, _ = tone_corpus
    packed = tmp_path / "packed"
    assert samstream("data", "pack", "--root", root, "--out", str(packed), "--max-mb", "0.02").returncode == 0
    out, wheels = tmp_path / "out", tmp_path / "no_wheels"
    wheels.mkdir()
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    environment = {**os.environ, "SAMSTREAM_DEVICE": "cpu", "SAMSTREAM_DATA": str(packed), "PYTHON": sys.executable,
                   "SAMSTREAM_WHEELS": str(wheels), "SAMSTREAM_WORKERS": "1",
                   "SAMSTREAM_TEXT_ENCODER_DIR": str(tmp_path / "no_encoder")}
    done = subprocess.run(["bash", "scripts/device_train.sh", str(out), "small", "0.05", "--batch-size", "2",
                           "--seconds", "1"], cwd=repository, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["config.json", "log.csv", "model.safetensors", "summary.txt"]  # < 15 MiB
    steps = checkpoint_metadata(out)["step"]
    assert 0 < steps < 10000000  # stopped by its 3 s budget, not by its steps
    whole = load_checkpoint(out)
    assert whole.config.transformer.width == 128
    # Weights over the limit on returned files come back in parts that join into the same checkpoint.
    parts = tmp_path / "parts"
    done = subprocess.run(["bash", "scripts/device_train.sh", str(parts), "small", "0.02", "--batch-size", "1",
                           "--seconds", "1"], cwd=repository, env={**environment, "SAMSTREAM_PART_MIB": "4"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pieces = sorted(name for name in os.listdir(parts) if name.startswith("model.safetensors.part-"))
    assert pieces == ["model.safetensors.part-00", "model.safetensors.part-01"]
    with open(parts / "model.safetensors", "wb") as joined:
        for piece in pieces:
            joined.write((parts / piece).read_bytes())
    assert load_checkpoint(parts).config == whole.config
    assert f"steps {steps} in" in (out / "summary.txt").read_text()
    refused = subprocess.run(["bash", "scripts/device_train.sh", str(out)], cwd=repository,
                             env={**environment, "SAMSTREAM_DATA": str(tmp_path / "nothing")},
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "run scripts/device_prepare.sh first" in refused.stderr
