"""The GPU preset is a real configuration of tens of millions of parameters (not trained here)."""
from samstream.models.config import MODEL_PRESETS, ModelConfig
from samstream.models.transformer import SeparationDiT
from samstream.plugin_host.cli import build_parser


def test_the_gpu_large_preset_has_tens_of_millions_of_parameters_and_round_trips():
    config = MODEL_PRESETS["gpu-large"]
    parameters = sum(parameter.numel() for parameter in SeparationDiT(config).parameters())
    assert 20e6 < parameters < 100e6
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert build_parser().parse_args(["train", "--preset", "gpu-large"]).preset == "gpu-large"
