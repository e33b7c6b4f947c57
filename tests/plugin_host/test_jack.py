"""`samstream serve --backend jack` on a real `jackd -d dummy` server, driven by real JACK and OSC clients."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from samstream.plugin_host.bench_live import Osc
from samstream.plugin_host.jack_server import PERIOD, dummy_jack
from tests.plugin_host.conftest import free_port
from tests.plugin_host.jack_rig import impulse_delays, jack_iodelay_frames

jack = pytest.importorskip("jack")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jackd with the dummy driver is run as root here")


@pytest.fixture(scope="module")
def jack_env():
    name = f"samstream-test-{os.getpid()}"
    with dummy_jack(name) as environment:
        yield name, environment


@pytest.fixture(scope="module")
def served(jack_env):
    """`samstream serve --backend jack` running on the dummy server, with its OSC port."""
    name, environment = jack_env
    osc_port, ws_port = free_port(socket.SOCK_DGRAM), free_port()
    process = subprocess.Popen([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack",
                                "--channels", "1", "--client-name", "samstream", "--osc-port", str(osc_port),
                                "--ws-port", str(ws_port)],
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "latency" not in line:
        process.kill()
        raise AssertionError(f"serve did not start: {line}{process.stderr.read()[-2000:]}")
    probe = Osc(osc_port)
    try:
        yield {"process": process, "osc": probe, "env": environment, "server": name, "ws_port": ws_port,
               "banner": line}
    finally:
        probe.close()
        process.terminate()
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err[-2000:]
        assert "stopped after" in out


def test_ports_publish_the_reported_latency(served):
    status = served["osc"].ask("/sam/status")
    latency = status["latency_samples"]
    assert f"latency {latency} samples" in served["banner"]
    listing = subprocess.run(["jack_lsp", "-s", served["server"], "-l", "samstream"], env=served["env"],
                             capture_output=True, text=True, check=True).stdout
    out_block = listing.split("samstream:out_1", 1)[1]
    assert f"capture latency = [ {latency} {latency} ]" in out_block, listing
    in_block = listing.split("samstream:in_1", 1)[1].split("samstream:out_1", 1)[0]
    assert f"playback latency = [ {latency} {latency} ]" in in_block, listing


def test_impulse_through_jack_comes_out_at_exactly_the_reported_latency(served):
    latency = served["osc"].ask("/sam/status")["latency_samples"]
    measured = impulse_delays(served["server"], latency)
    assert len(measured) >= 3, measured
    assert all(delay == latency for delay in measured), (measured, latency)


def test_jack_iodelay_measures_the_latency_plus_the_period_in_bypass(served):
    """`jack_iodelay` looped through the bridge: DESIGN.md's cross-check with JACK's own tool."""
    latency = served["osc"].ask("/sam/status")["latency_samples"]
    served["osc"].send("/sam/bypass", 1)
    try:
        frames = jack_iodelay_frames(served["server"], served["env"])
    finally:
        served["osc"].send("/sam/bypass", 0)
    # jack_iodelay adds one period of its own; its figure carries an extra fractional estimate.
    assert abs(frames - (latency + PERIOD)) < 2, (frames, latency)


def test_osc_prompt_over_oscsend_reaches_the_running_stream(served):
    osc = served["osc"]
    port = osc.address[1]
    subprocess.run(["oscsend", "127.0.0.1", str(port), "/sam/prompt/text", "s", "speech"], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = osc.ask("/sam/status")
        if "speech" in status["prompt"]:
            break
        time.sleep(0.1)
    assert "speech" in status["prompt"]
    hops_before = status["hops"]
    time.sleep(0.3)
    assert osc.ask("/sam/status")["hops"] > hops_before, "audio keeps flowing"
    subprocess.run(["oscsend", "127.0.0.1", str(port), "/sam/prompt/clear"], check=True)


def flood_with_garbage(address, datagrams: int = 3000) -> float:
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    generator = np.random.default_rng(1)
    sent_at = time.monotonic()
    for index in range(datagrams):
        kind = index % 4
        if kind == 0:
            junk.sendto(generator.bytes(int(generator.integers(1, 400))), address)
        elif kind == 1:
            junk.sendto(b"/sam/mix\x00\x00\x00\x00,s\x00\x00loud\x00\x00\x00\x00", address)
        elif kind == 2:
            junk.sendto(b"/sam/nothing\x00\x00\x00\x00,\x00\x00\x00", address)
        else:
            junk.sendto(b"{not osc at all}", address)
    junk.close()
    return time.monotonic() - sent_at


def test_garbage_floods_are_refused_while_audio_keeps_flowing(served):
    osc = served["osc"]
    state_before = osc.ask("/sam/state")
    # This shared VM stalls now and then on its own (up to about one xrun in 5 s under load,
    # measured with the live bench, and bursts of a dozen when CI's other work lands in the
    # window); a stall or two is not the flood. A flood that stalled the audio would do so
    # every time, so one of three floods must go through with at most three xruns.
    xruns_per_flood = []
    for _ in range(3):
        before = osc.ask("/sam/status")
        flood_seconds = flood_with_garbage(osc.address)
        time.sleep(0.5)
        after = osc.ask("/sam/status")
        assert osc.ask("/sam/state") == state_before
        assert after["hops"] > before["hops"]
        xruns_per_flood.append(after["xruns"] - before["xruns"])
        if xruns_per_flood[-1] <= 3:
            break
    assert min(xruns_per_flood) <= 3, f"3000 datagrams ({flood_seconds:.2f} s the last): xruns {xruns_per_flood}"


def test_status_reports_what_users_need(served):
    status = served["osc"].ask("/sam/status")
    for key in ("latency_ms", "xruns", "misses", "rtf", "prompt", "confidence"):
        assert key in status
    assert status["backend"] == "jack" and status["sample_rate"] == 48000


def test_pyaudio_on_jacks_host_api_streams_through_the_bridge(jack_env):
    """The PortAudio backend on the JACK host API: real pyaudio, real ports, audio through the model path."""
    pyaudio = pytest.importorskip("pyaudio")
    name, environment = jack_env
    os.environ["JACK_DEFAULT_SERVER"] = name
    from samstream.plugin_host.backends import PortAudioBackend
    from samstream.plugin_host.bridge import LiveBridge
    audio = pyaudio.PyAudio()
    apis = [audio.get_host_api_info_by_index(i)["name"] for i in range(audio.get_host_api_count())]
    audio.terminate()
    assert any("JACK" in api for api in apis), apis
    bridge = LiveBridge(host_block=PERIOD)
    backend = PortAudioBackend(bridge, channels=1, block=PERIOD)
    backend.prepare()
    backend.start()
    try:
        # PortAudio's JACK client can take a moment to start on a busy machine: wait for hops.
        deadline = time.monotonic() + 15
        while bridge.status()["hops"] <= 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        clients = subprocess.run(["jack_lsp", "-s", name], env=environment, capture_output=True, text=True).stdout
        assert "PortAudio" in clients or "python" in clients.lower(), clients
        status = bridge.status()
        assert status["hops"] > 100, status
        assert status["backend"] == "portaudio"
    finally:
        backend.close()


def test_serve_without_a_jack_server_says_so():
    environment = {**os.environ, "JACK_DEFAULT_SERVER": "no-such-server-here"}
    result = subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack",
                             "--no-control"], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "no JACK server is running" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_ends_serve_cleanly(jack_env):
    _, environment = jack_env
    process = subprocess.Popen([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack",
                                "--channels", "2", "--client-name", "samstream-term", "--no-control"],
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "latency" in process.stdout.readline()
    stopper = threading.Timer(0.5, process.terminate)
    stopper.start()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped after" in out


def resident_megabytes(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(120)
def test_soak_prompts_clients_and_garbage_for_twenty_seconds(served):
    """A bounded soak: audio playing, prompts, modes and mixes changing over OSC and WebSocket, garbage
    in between; the stream keeps running, memory stays flat, and the output stays finite and audible."""
    import json

    from websockets.sync.client import connect

    from samstream.plugin_host.audio_files import read_audio
    from samstream.plugin_host.bench_live import EXAMPLE, Player

    osc = served["osc"]
    signal, _ = read_audio(EXAMPLE)
    player = Player(signal.mean(axis=0).astype(np.float32), 25, server=served["server"])
    player.activate()
    generator = np.random.default_rng(7)
    before = osc.ask("/sam/status")
    pid = served["process"].pid
    memory_before = resident_megabytes(pid)
    meters = 0
    try:
        with connect(f"ws://127.0.0.1:{served['ws_port']}/ws") as web:
            web.send(json.dumps({"op": "set", "path": "/sam/subscribe", "value": 1}))
            started = time.monotonic()
            while time.monotonic() - started < 20:
                choice = int(generator.integers(0, 5))
                if choice == 0:
                    osc.send("/sam/prompt/text", str(generator.choice(["speech", "mains hum", "voice", ""])))
                elif choice == 1:
                    web.send(json.dumps({"op": "set", "path": "/sam/mode",
                                         "value": str(generator.choice(["extract", "remove"]))}))
                elif choice == 2:
                    osc.send("/sam/mix", float(generator.uniform(0, 1)))
                elif choice == 3:
                    web.send("{garbage")
                else:
                    osc.socket.sendto(generator.bytes(64), osc.address)
                deadline = time.monotonic() + 0.25
                while time.monotonic() < deadline:
                    try:
                        frame = json.loads(web.recv(timeout=0.05))
                    except TimeoutError:
                        continue
                    meters += frame.get("op") == "meter"
    finally:
        player.close()
    after = osc.ask("/sam/status")
    assert served["process"].poll() is None
    assert after["hops"] - before["hops"] > 0.8 * 20 * 48000 / 256
    assert meters >= 100, "meters at 10 Hz or more for 20 s"
    growth = resident_megabytes(pid) - memory_before
    assert growth < 40, f"serve grew by {growth:.1f} MB in 20 s"
    heard = player.recorded[:player.recorded_at]
    assert np.isfinite(heard).all() and np.abs(heard).max() > 0.01
    print(f"soak: {after['hops'] - before['hops']} hops, {after['misses'] - before['misses']} misses, "
          f"{after['xruns'] - before['xruns']} xruns, memory {growth:+.1f} MB")
