"""The text prompt encoder on the serving path (runtime half: numpy, onnxruntime, tokenizers).

The encoder is all-MiniLM-L6-v2 (sentence-transformers), exported once by
``samstream.models.text_export`` into a folder holding

- ``text_encoder.onnx``: BERT + mean pooling + L2 normalisation in one graph,
  inputs ``input_ids`` and ``attention_mask`` (int64, batch x tokens), output
  ``embedding`` (float32, batch x 384, unit norm);
- ``text_encoder.int8.onnx``: a dynamically quantised variant, only when it kept the
  fp32 embeddings within the cosine threshold recorded in ``config.json``;
- ``tokenizer.json``: the shipped WordPiece tokenizer;
- ``config.json``: dimension, token limit, file sizes and sha256 digests, source.

``TextEncoder.encode(text)`` returns one float32 vector of 384 values with unit norm,
or ``None`` for an empty prompt (see ``encode``). Results are cached per normalised
text, so a prompt switched back and forth over OSC costs one model run.

This module never imports torch, transformers or sentence_transformers.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_NAME = "config.json"
FORMAT = "samstream.text_encoder"
FORMAT_VERSION = 1
VARIANTS = ("fp32", "int8")
ENV_DIR = "SAMSTREAM_TEXT_ENCODER_DIR"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"
MAX_PROMPT_CHARS = 100_000  # longer prompts are cut here before tokenizing (the model reads <= 254 tokens)
_NORM_TOLERANCE = 1e-3


class ModelFileError(ValueError):
    """A text-encoder file is missing, unreadable, corrupt or does not match the others.

    ``path`` names the offending file; the message starts with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def default_text_encoder_dir() -> Path:
    """Where ``samstream export --text-encoder`` writes and ``TextEncoder.load()`` looks.

    ``$SAMSTREAM_TEXT_ENCODER_DIR`` when set, else ``models/assets/text_encoder`` next to
    this module (a git-ignored folder made once per machine).
    """
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent / "assets" / "text_encoder"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json``; raise ModelFileError naming it if it is unusable."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelFileError(path, "missing (export it with `python -m samstream.models.text_export`)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(path, f"unreadable: {error}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(path, f"not a samstream text-encoder config (format != {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            path, f"format_version {config.get('format_version')!r}, this samstream reads {FORMAT_VERSION}"
        )
    try:
        dimension = int(config["dimension"])
        max_tokens = int(config["max_tokens"])
        files = config["files"]
        for key in ("fp32", "tokenizer"):
            entry = files[key]
            str(entry["name"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(path, f"missing or bad field: {error}") from None
    if dimension <= 0 or max_tokens < 3:
        raise ModelFileError(path, f"bad dimension {dimension} or max_tokens {max_tokens}")
    return config


def _file_entry(directory: Path, config: dict[str, Any], key: str) -> tuple[Path, dict[str, Any]]:
    entry = config["files"].get(key)
    if not entry:
        reason = config.get("int8", {}).get("reason", "not exported") if key == "int8" else "not listed"
        raise ModelFileError(directory / CONFIG_NAME, f"no {key} model file: {reason}")
    name = str(entry["name"])
    if Path(name).name != name:
        raise ModelFileError(directory / CONFIG_NAME, f"file name {name!r} must be a plain name")
    return directory / name, entry


def _read_checked(path: Path, entry: dict[str, Any], verify: bool) -> bytes:
    if not path.is_file():
        raise ModelFileError(path, "missing")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(path, f"unreadable: {error}") from None
    if "bytes" in entry and len(data) != int(entry["bytes"]):
        raise ModelFileError(path, f"{len(data)} bytes, config.json says {entry['bytes']} (corrupt or mismatched)")
    if verify and sha256_bytes(data) != entry["sha256"]:
        raise ModelFileError(path, "sha256 differs from config.json (corrupt or mismatched)")
    return data


def normalize_prompt(text: str) -> str:
    """Whitespace-stripped and collapsed text (case kept). Raises TypeError for a non-str."""
    if not isinstance(text, str):
        raise TypeError(f"a text prompt must be a str, got {type(text).__name__}")
    return " ".join(text.split())


class TextEncoder:
    """Text prompt -> unit-norm float32 embedding, with an LRU cache per normalised text.

    Built by ``TextEncoder.load(dir)``. Safe to call from several threads (a control
    thread, an OSC and a WebSocket handler): one lock covers the cache and the model run,
    which is fine because this never runs on the audio path.
    """

    def __init__(self, session: Any, tokenizer: Any, config: dict[str, Any], directory: Path,
                 variant: str = "fp32", cache_size: int = 256):
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._session = session
        self._tokenizer = tokenizer
        self._normalizer = tokenizer.normalizer
        self.config = config
        self.directory = directory
        self.variant = variant
        self.dimension = int(config["dimension"])
        self.max_tokens = int(config["max_tokens"])
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0
        self.hits = 0
        self.misses = 0

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None, *, variant: str = "fp32",
             threads: int = 1, cache_size: int = 256, verify: bool = True,
             providers: list[str] | None = None) -> TextEncoder:
        """Load an exported encoder from ``directory`` (default: ``default_text_encoder_dir()``).

        ``variant``: ``"fp32"`` or ``"int8"`` (the latter exists only when it passed the
        export's cosine check). ``threads``: ONNX Runtime intra-op threads (1 or 2 keep
        the encoder from competing with the audio worker; spinning is off). ``verify``:
        check the sha256 of every file against config.json (~0.1 s for 90 MB).

        Raises ModelFileError naming the file for anything missing, corrupt or mismatched.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        directory = Path(directory) if directory is not None else default_text_encoder_dir()
        config = read_config(directory)
        dimension = int(config["dimension"])

        tokenizer_path, tokenizer_entry = _file_entry(directory, config, "tokenizer")
        tokenizer_bytes = _read_checked(tokenizer_path, tokenizer_entry, verify)
        try:
            tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        except Exception as error:  # the tokenizers library raises its own exception types
            raise ModelFileError(tokenizer_path, f"not a tokenizers file: {error}") from None
        vocab_size = config.get("vocab_size")
        if vocab_size is not None and tokenizer.get_vocab_size() != int(vocab_size):
            raise ModelFileError(
                tokenizer_path, f"vocabulary of {tokenizer.get_vocab_size()}, config.json says {vocab_size}"
            )
        if tokenizer.normalizer is None:
            raise ModelFileError(tokenizer_path, "has no normalizer (not the BERT tokenizer)")
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(config["max_tokens"]))

        model_path, model_entry = _file_entry(directory, config, variant)
        model_bytes = _read_checked(model_path, model_entry, verify)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_bytes, options,
                                           providers=providers or ["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises several unrelated exception types
            raise ModelFileError(model_path, f"ONNX Runtime cannot load it: {error}") from None
        names = tuple(node.name for node in session.get_inputs())
        outputs = session.get_outputs()
        if sorted(names) != sorted(INPUT_NAMES) or len(outputs) != 1 or outputs[0].name != OUTPUT_NAME:
            raise ModelFileError(model_path, f"inputs {names} / outputs {[o.name for o in outputs]} are not "
                                             f"{INPUT_NAMES} -> ({OUTPUT_NAME!r},)")
        shape = outputs[0].shape
        if len(shape) != 2 or shape[1] != dimension:
            raise ModelFileError(model_path, f"output shape {shape}, config.json says (batch, {dimension})")

        encoder = cls(session, tokenizer, config, directory, variant=variant, cache_size=cache_size)
        # Warm-up run (the first run plans the graph) doubling as a sanity check.
        probe = encoder._run("a man speaking")
        if probe.shape != (dimension,) or not np.isfinite(probe).all() \
                or abs(float(np.linalg.norm(probe)) - 1.0) > _NORM_TOLERANCE:
            raise ModelFileError(model_path, "does not produce finite unit-norm embeddings")
        encoder.runs = 0
        return encoder

    # -- encoding --------------------------------------------------------------------

    def _prepare(self, text: str) -> tuple[str, str]:
        """(text the tokenizer gets, cache key); ("", "") for an empty prompt."""
        collapsed = normalize_prompt(text)[:MAX_PROMPT_CHARS]
        if not collapsed:
            return "", ""
        return collapsed, " ".join(self._normalizer.normalize_str(collapsed).split())

    def cache_key(self, text: str) -> str:
        """The cache key: the text as the model reads it, whitespace collapsed.

        The text is stripped and its whitespace collapsed, then passed through the
        tokenizer's own normaliser (BERT, uncased: control characters dropped, lower-cased,
        accents stripped). So "Lead Vocal", "lead  vocal " and "LEAD VOCAL" share one entry,
        exactly because the model cannot tell them apart; texts that tokenize differently
        never share one. "" means an empty prompt.
        """
        return self._prepare(text)[1]

    def encode(self, text: str) -> np.ndarray | None:
        """Embed one text prompt: float32, shape (dimension,), unit L2 norm, read-only.

        An empty prompt ("", only whitespace, or only control characters) returns
        ``None``: it means "no prompt", and the engine passes audio through. A zero vector
        is not returned because every real embedding has unit norm, a zero vector would
        look like a valid conditioning input that the model never saw, and ``None`` makes
        a caller branch explicitly. Any other string (unknown words, emoji, other scripts,
        very long text) gives a finite unit-norm embedding; the model reads at most
        ``max_tokens`` tokens (the rest is truncated, as sentence-transformers does) and
        text beyond MAX_PROMPT_CHARS characters is cut before tokenizing.

        Raises TypeError for anything but a str. Texts with the same ``cache_key`` return
        the same array object without running the model again.
        """
        prepared, key = self._prepare(text)
        if not key:
            return None
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return cached
            self.misses += 1
            embedding = self._run(prepared)
            embedding.flags.writeable = False
            if self.cache_size:
                self._cache[key] = embedding
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return embedding

    def _run(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        ids = np.asarray(encoding.ids, dtype=np.int64)[None, :]
        mask = np.ones_like(ids)
        self.runs += 1
        output = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        embedding = np.array(output[0], dtype=np.float32, copy=True)
        if not np.isfinite(embedding).all():  # cannot happen with a sane model; never pass NaN on
            raise FloatingPointError(f"text encoder produced a non-finite embedding for {text[:40]!r}")
        return embedding

    def token_count(self, text: str) -> int:
        """Tokens the model reads for ``text`` (with [CLS] and [SEP], after truncation); 0 if empty."""
        prepared, key = self._prepare(text)
        return len(self._tokenizer.encode(prepared).ids) if key else 0

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._cache),
                    "max_size": self.cache_size, "runs": self.runs}

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
