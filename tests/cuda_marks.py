"""Where the CUDA tests run: on a GPU when there is one, else under numba's CUDA simulator.

The simulator has to be chosen before numba.cuda is first imported, so on a machine without
a GPU these files skip in the main test run and ``tests/test_cuda_simulator.py`` runs them
again in a child process with ``NUMBA_ENABLE_CUDASIM=1``. There the simulator stands in for
the GPU: it runs every CUDA thread as a Python thread, so it checks the kernels' arithmetic
and their barriers, not their speed, and nothing about a real device's memory or timing.
"""
import pytest
from numba import config as numba_config
from numba import cuda

SIMULATED = bool(numba_config.ENABLE_CUDASIM)
ON_CUDA = SIMULATED or cuda.is_available()

needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="no CUDA device here; tests/test_cuda_simulator.py runs this "
                                                    "file under numba's CUDA simulator")
