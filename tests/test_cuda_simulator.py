"""Runs the CUDA tests in a child process under numba's CUDA simulator when there is no GPU.

The simulator stands in for a GPU here (NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda
is imported, hence the child process): the kernels' numbers are checked against the CPU
kernels, not their speed.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cuda_marks import ON_CUDA, SIMULATED

ROOT = Path(__file__).resolve().parent.parent
CUDA_TEST_FILES = ["tests/kernels/test_cuda_kernels.py", "tests/stream/test_gpu_engine.py"]


@pytest.mark.skipif(ON_CUDA and not SIMULATED, reason="a real GPU is here: the CUDA tests ran on it directly")
@pytest.mark.skipif(SIMULATED, reason="already under the simulator")
def test_cuda_kernels_and_gpu_engine_under_the_cuda_simulator():
    environment = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TEST_FILES],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "skipped" not in summary and "passed" in summary, summary
