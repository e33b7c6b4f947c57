"""`samstream serve --backend jack` on JACK servers at 44.1, 48 and 96 kHz (issue 33, part 5).

The model runs at 48 kHz; another host rate is converted inside the live path, and the
latency serve reports, in the host's samples, must still be exactly what an impulse and
`jack_iodelay` measure. Before, a 44.1 kHz server stopped serve with libjack's "NULL client"
message and "the JACK server runs at 0 Hz".
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from samstream.plugin_host.jack_server import PERIOD, dummy_jack
from tests.plugin_host.jack_rig import impulse_delays, jack_iodelay_frames

pytest.importorskip("jack")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jackd with the dummy driver is run as root here")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_serve_at_the_servers_rate_reports_what_an_impulse_and_jack_iodelay_measure(rate):
    name = f"samstream-rate-{rate}-{os.getpid()}"
    with dummy_jack(name, rate) as environment:
        process = subprocess.Popen([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack",
                                    "--channels", "1", "--no-control", "--no-judge"],
                                   env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            banner = process.stdout.readline()
            found = re.search(rf"at {rate} Hz, latency (\d+) samples", banner)
            if not found:
                process.kill()
                raise AssertionError(banner + process.stderr.read()[-2000:])
            latency = int(found.group(1))
            # Above the model's rate the click comes back band-limited to 24 kHz, at about half its height.
            clicks = impulse_delays(name, latency, threshold=0.3 if rate > 48000 else 0.5)
            frames = jack_iodelay_frames(name, environment)
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err[-2000:]
    print(f"{rate} Hz: reported {latency}, impulse {clicks}, jack_iodelay {frames}")
    assert len(clicks) >= 3 and all(delay == latency for delay in clicks), (clicks, latency)
    # With no prompt the dry signal passes; jack_iodelay adds one period of its own.
    assert abs(frames - (latency + PERIOD)) < 2, (frames, latency)
