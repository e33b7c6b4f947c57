"""Caption embeddings stored beside a corpus, so that training needs no text encoder.

Training prompts with the corpus's captions only, a few hundred sentences. A machine that
trains without the encoder's files (a rented GPU, which the 90 MB ONNX graph cannot travel
to) reads their embeddings from ``caption_embeddings.npz`` in the corpus folder instead.
The file names the encoder that made it (the sha256 of its graph), so that a run never
mixes embeddings of two encoders without saying so.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np

FILE_NAME = "caption_embeddings.npz"


def corpus_file(corpus: str | os.PathLike) -> str:
    return os.path.join(corpus, FILE_NAME)


def write_caption_embeddings(path: str | os.PathLike, captions: Iterable[str],
                             encode: Callable[[str], np.ndarray | None], encoder_id: str) -> int:
    """Embeds every distinct caption and writes them to ``path``; returns how many."""
    ordered = sorted({str(caption) for caption in captions if str(caption).strip()})
    if not ordered:
        raise ValueError(f"{path}: no captions to embed")
    embeddings = np.stack([np.asarray(encode(caption), np.float32) for caption in ordered])
    partial = f"{path}.partial.npz"
    np.savez(partial, captions=np.array(ordered), embeddings=embeddings, encoder=np.array(encoder_id))
    os.replace(partial, path)
    return len(ordered)


class CaptionEmbeddings:
    """caption -> embedding, read from a file that ``write_caption_embeddings`` wrote."""

    def __init__(self, table: dict[str, np.ndarray], encoder_id: str, path: str):
        self.table = table
        self.encoder_id = encoder_id
        self.path = path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CaptionEmbeddings:
        try:
            with np.load(path, allow_pickle=False) as stored:
                captions, embeddings, encoder = stored["captions"], stored["embeddings"], str(stored["encoder"])
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a caption-embedding file ({error})") from None
        if embeddings.ndim != 2 or len(captions) != len(embeddings):
            raise ValueError(f"{path}: {len(captions)} captions against embeddings of shape {embeddings.shape}")
        table = {str(caption): row.astype(np.float32) for caption, row in zip(captions, embeddings, strict=True)}
        return cls(table, encoder, str(path))

    def __call__(self, caption: str) -> np.ndarray:
        try:
            return self.table[caption]
        except KeyError:
            raise ValueError(f"{self.path}: no embedding for the caption {caption!r}; write the file again "
                             f"from this corpus (`samstream data captions`)") from None


def embed_corpus_captions(corpus: str | os.PathLike) -> str:
    """Writes ``caption_embeddings.npz`` for every caption of the corpus's manifest; returns its path."""
    from .data.manifest import read_manifest
    from .text_encoder import TextEncoder

    encoder = TextEncoder.load()
    entries = read_manifest(os.path.join(corpus, "manifest.jsonl"))
    captions = [caption for entry in entries for caption in entry.captions]
    path = corpus_file(corpus)
    write_caption_embeddings(path, captions, encoder.encode, encoder_identity(encoder))
    return path


def encoder_identity(encoder) -> str:
    entry = encoder.config["files"].get(encoder.variant, {})
    return f"{encoder.variant}:{entry.get('sha256', 'unknown')}"
