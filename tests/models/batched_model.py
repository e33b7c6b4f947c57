"""A tiny random model exported with its batched hop graph, for the batched and GPU tests."""
from pathlib import Path

import torch

from samstream.models.checkpoint import save_checkpoint
from samstream.models.config import ModelConfig, StftConfig, TransformerConfig
from samstream.models.export import export_model_dir
from samstream.models.transformer import SeparationDiT


def export_tiny_model(folder: Path, lookahead: int = 0, n_fft: int = 1024, hop: int = 256) -> Path:
    """Every weight drawn (none left at its zero init), context 8 frames so the cache ring wraps."""
    config = ModelConfig(stft=StftConfig(n_fft=n_fft, hop=hop),
                         transformer=TransformerConfig(width=32, depth=2, heads=2, context_frames=8,
                                                       lookahead_frames=lookahead))
    torch.manual_seed(lookahead)
    model = SeparationDiT(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    save_checkpoint(model.eval(), folder / "checkpoint")
    export_model_dir(folder / "checkpoint", folder / "serving", 1)
    return folder / "serving"
