"""The device engine against the CPU engine, hop by hop.

On a machine without a GPU this file runs under numba's CUDA simulator (tests/cuda_marks.py),
which stands in for the device; ONNX Runtime then has no CUDA provider, so the model's
inputs and outputs are staged through host memory around the call (``binds_device_memory``
is False) while every kernel, ring and cache stays on the simulated device. Binding device
pointers to ONNX Runtime's CUDA provider is only exercised on a real GPU.
"""
import numpy as np
import pytest

from samstream.models.batched_runtime import BatchedSeparator
from samstream.models.runtime import Prompt
from samstream.stream.engine import StftEngine

from ..cuda_marks import SIMULATED, needs_cuda
from ..models.batched_model import export_tiny_model

pytestmark = needs_cuda


@pytest.fixture(scope="module", params=[0, 2], ids=["no-lookahead", "lookahead-2"])
def serving(request, tmp_path_factory):
    # A small STFT (256/64): the simulator runs every device thread as a Python thread.
    return export_tiny_model(tmp_path_factory.mktemp(f"gpu{request.param}"), lookahead=request.param,
                             n_fft=256, hop=64)


def stream_hops(engine, signal, hop):
    out = np.zeros_like(signal)
    hop_out = np.zeros((signal.shape[0], hop), np.float32)
    for start in range(0, signal.shape[1], hop):
        engine.process(np.ascontiguousarray(signal[:, start:start + hop]), hop_out)
        out[:, start:start + hop] = hop_out
    return out


def test_the_device_stft_round_trip_is_the_input_delayed():
    from samstream.stream.gpu_engine import CudaStftEngine
    engine = CudaStftEngine(128, 32)
    engine.configure(48000, 32, 2)
    signal = (np.random.default_rng(0).standard_normal((2, 32 * 8)) * 0.5).astype(np.float32)
    out = stream_hops(engine, signal, 32)
    delay = engine.latency_samples
    assert delay == 96
    assert np.abs(out[:, delay:] - signal[:, :-delay]).max() < 1e-5
    engine.reset()
    assert np.abs(stream_hops(engine, signal, 32) - out).max() == 0.0


def test_the_device_engine_equals_the_cpu_batched_engine(serving):
    """Two stereo streams, prompts on one, a prompt switch with a fade, past the cache's length."""
    from samstream.models.gpu_runtime import DeviceSeparator, onnxruntime_has_cuda
    from samstream.stream.gpu_engine import CudaStftEngine
    streams, channels, hops = 2, 2, 11
    device_separator = DeviceSeparator(serving, streams, channels, seed=5, crossfade_frames=2, noise="host")
    cpu_separator = BatchedSeparator(serving, streams, channels, seed=5, crossfade_frames=2)
    assert device_separator.binds_device_memory is (not SIMULATED and onnxruntime_has_cuda())
    config = cpu_separator.config
    n_fft, hop = config.stft.n_fft, config.stft.hop
    engines = [CudaStftEngine(n_fft, hop, device_separator), StftEngine(n_fft, hop, model=cpu_separator)]
    text = np.random.default_rng(1).standard_normal((2, config.prompt.text_dim)).astype(np.float32)
    for separator in (device_separator, cpu_separator):
        separator.set_prompt(Prompt(text_embedding=text[0]), stream=1)
    for engine in engines:
        engine.configure(48000, hop, streams * channels)
    signal = (np.random.default_rng(2).standard_normal((streams * channels, hops * hop)) * 0.1).astype(np.float32)
    outputs = []
    for engine, separator in zip(engines, (device_separator, cpu_separator), strict=True):
        first = stream_hops(engine, signal[:, :6 * hop], hop)
        separator.set_prompt(Prompt(text_embedding=text[1]), stream=0)
        separator.set_prompt(Prompt(), stream=1)
        outputs.append(np.concatenate([first, stream_hops(engine, signal[:, 6 * hop:], hop)], axis=1))
    on_device, on_cpu = outputs
    assert np.abs(on_cpu).max() > 0.01
    # A real GPU's ONNX Runtime kernels sum in other orders than the CPU's: a looser bound there.
    assert np.abs(on_device - on_cpu).max() <= (2e-5 if SIMULATED else 1e-4)


@pytest.fixture(scope="module")
def small_serving(tmp_path_factory):
    """The smallest STFT (128/32): the simulator seeds one noise generator per element, slowly."""
    return export_tiny_model(tmp_path_factory.mktemp("gpu_small"), n_fft=128, hop=32)


@pytest.mark.filterwarnings("ignore")  # the simulator's uint64 generator arithmetic overflows on purpose
def test_device_noise_runs_and_a_stream_without_a_prompt_passes_through(small_serving):
    serving = small_serving
    from samstream.models.gpu_runtime import DeviceSeparator
    from samstream.stream.gpu_engine import CudaStftEngine
    separator = DeviceSeparator(serving, 2, 1, noise="device")
    config = separator.config
    hop = config.stft.hop
    engine = CudaStftEngine(config.stft.n_fft, hop, separator)
    separator.set_prompt(Prompt(text_embedding=np.ones(config.prompt.text_dim, np.float32)), stream=1)
    engine.configure(48000, hop, 2)
    signal = (np.random.default_rng(3).standard_normal((2, 8 * hop)) * 0.1).astype(np.float32)
    out = stream_hops(engine, signal, hop)
    delay = engine.latency_samples
    assert np.isfinite(out).all()
    assert np.abs(out[0, delay:] - signal[0, :-delay]).max() < 1e-5
    assert np.abs(out[1, delay:] - signal[1, :-delay]).max() > 1e-3


def test_an_impulse_through_the_scheduler_and_the_device_engine_arrives_at_the_reported_latency():
    """Host blocks of changing sizes around the device engine, as a live backend would give them."""
    from samstream.stream.gpu_engine import CudaStftEngine
    from samstream.stream.offline import random_blocks, render_streamed
    from samstream.stream.scheduler import BlockScheduler
    scheduler = BlockScheduler(CudaStftEngine(128, 32))
    scheduler.configure(48000, 64, 1)
    signal = np.zeros((1, 32 * 14), np.float32)
    signal[0, 37] = 1.0
    out = render_streamed(scheduler, signal, random_blocks(1, 64, seed=4))
    assert scheduler.latency_samples == 96 + 31  # the STFT's n_fft - hop, and hop - 1 for changing blocks
    assert int(np.argmax(np.abs(out[0]))) == 37 + scheduler.latency_samples
    assert abs(out[0, 37 + scheduler.latency_samples] - 1.0) < 1e-5
