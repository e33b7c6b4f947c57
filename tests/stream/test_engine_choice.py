"""make_engine: "cuda" without CUDA is refused with its reason, "auto" falls back to the CPU once, aloud.

This machine's test run has no GPU (or, under the simulator, no real one): the refusal and
the fallback are what is tested here; the device engine itself is tested in test_gpu_engine.py.
"""
import numpy as np
import pytest

from samstream.stream.engine import ConfigurationError, StftEngine
from samstream.stream.gpu_engine import cuda_unavailable_reason, make_engine

from ..models.batched_model import export_tiny_model

pytestmark = pytest.mark.skipif(cuda_unavailable_reason() is None, reason="CUDA is here: no fallback to test")


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("choice"))


def test_cuda_is_refused_with_the_reason_in_one_line(serving):
    with pytest.raises(ConfigurationError) as refused:
        make_engine(serving, device="cuda")
    message = str(refused.value)
    assert message.startswith("device cuda: ") and "\n" not in message
    assert cuda_unavailable_reason() in message


def test_auto_falls_back_to_the_cpu_and_says_so_once(serving):
    said = []
    engine = make_engine(serving, device="auto", streams=3, say=said.append)
    assert isinstance(engine, StftEngine) and engine.device == "cpu"
    assert len(said) == 1 and "running on the CPU" in said[0]
    engine.configure(48000, 256, 3)
    hop_out = np.zeros((3, 256), np.float32)
    engine.process(np.ones((3, 256), np.float32), hop_out)
    assert np.isfinite(hop_out).all()
    assert make_engine(serving, device="cpu", say=said.append).device == "cpu" and len(said) == 1


def test_an_unknown_device_is_refused(serving):
    with pytest.raises(ConfigurationError, match="device must be one of cpu, cuda, auto"):
        make_engine(serving, device="tpu")
