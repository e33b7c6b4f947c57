"""A JACK server of our own: `jackd -d dummy` at 48 kHz (or another rate), 128-frame periods, under its own name."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

PERIOD = 128
RATE = 48000


@contextmanager
def dummy_jack(name: str, rate: int = RATE) -> Iterator[dict]:
    """Start a named dummy JACK server; yields the environment that points clients at it."""
    if shutil.which("jackd") is None:
        raise RuntimeError("jackd is not installed (scripts/setup.sh installs jackd2)")
    environment = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    process = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(PERIOD)],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(["jack_lsp", "-s", name], env=environment, capture_output=True, text=True)
            if probe.returncode == 0 and "system:" in probe.stdout:
                break
            if process.poll() is not None:
                raise RuntimeError(f"jackd exited: {process.stderr.read().decode(errors='replace')[-400:]}")
            time.sleep(0.2)
        else:
            raise RuntimeError("jackd did not come up within 20 s")
        yield environment
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
