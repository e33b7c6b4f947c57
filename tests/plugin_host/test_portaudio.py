"""`samstream serve --backend portaudio` on PortAudio's JACK host API, and how it finds a device."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from samstream.plugin_host.backends import find_portaudio_device
from samstream.plugin_host.jack_server import dummy_jack
from samstream.stream.engine import ConfigurationError
from tests.plugin_host.jack_rig import jack_iodelay_frames


class FakePyAudio:
    """What pyaudio tells about the devices of a machine with a JACK server and an ALSA card."""

    apis = ("ALSA", "JACK Audio Connection Kit")
    devices = ({"index": 0, "name": "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "hostApi": 0,
                "maxInputChannels": 2, "maxOutputChannels": 2},
               {"index": 1, "name": "system", "hostApi": 1, "maxInputChannels": 2, "maxOutputChannels": 2})

    def get_device_count(self):
        return len(self.devices)

    def get_device_info_by_index(self, index):
        return self.devices[index]

    def get_host_api_info_by_index(self, index):
        return {"index": index, "name": self.apis[index]}


@pytest.mark.parametrize("name", ["jack", "JACK Audio Connection Kit", "system", "1"])
def test_a_device_is_found_by_its_name_or_its_host_apis_name(name):
    assert find_portaudio_device(FakePyAudio(), name, 2) == 1


def test_a_device_name_beats_a_host_api_name():
    assert find_portaudio_device(FakePyAudio(), "alc3246", 2) == 0


def test_no_match_lists_every_device_with_its_host_api():
    with pytest.raises(ConfigurationError) as refused:
        find_portaudio_device(FakePyAudio(), "coreaudio", 2)
    message = str(refused.value)
    assert "'system' on 'JACK Audio Connection Kit'" in message and "ALC3246" in message, message


@pytest.mark.skipif(os.geteuid() != 0, reason="jackd with the dummy driver is run as root here")
def test_jack_iodelay_through_portaudio_reads_the_reported_latency():
    """PortAudio buffers outside the live path; the figure serve reports counts it (issue 33, part 4).

    Through PortAudio's JACK host API `jack_iodelay` read 1408 frames while serve reported
    1152: PortAudio's own stream latency (input 0 + output 256 frames here) was missing."""
    pytest.importorskip("pyaudio")
    pytest.importorskip("jack")
    name = f"samstream-pa-{os.getpid()}"
    with dummy_jack(name) as environment:
        # The README's example: the host API's name picks JACK's one device, "system".
        process = subprocess.Popen([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend",
                                    "portaudio", "--device", "jack", "--channels", "1", "--block", "128",
                                    "--no-control", "--no-judge"],
                                   env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            banner = process.stdout.readline()
            found = re.search(r"latency (\d+) samples", banner)
            assert found, banner + process.stderr.read()[-2000:] if process.poll() is not None else banner
            latency = int(found.group(1))
            frames = jack_iodelay_frames(name, environment, into="PortAudio:in_0", out_of="PortAudio:out_0")
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err[-2000:]
    assert abs(frames - latency) < 2, (frames, latency, banner)
