"""`samstream serve` as a user starts it: port options, ports already taken, and OSC
feedback to a fixed reply address, seen by liblo's oscdump."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.plugin_host.conftest import free_port
from tests.plugin_host.test_cli import samstream
from tests.plugin_host.test_osc_feedback import OscDump, oscsend

EXAMPLE = "examples/speech_hum.flac"
pytestmark = pytest.mark.timeout(120)


def serve_file(*options: str) -> list[str]:
    return ["serve", "--backend", "file", "--input", EXAMPLE, "--no-judge", *options]


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("option, value, expected", [
    ("--osc-port", "70000", "must be a port 1..65535"),
    ("--ws-port", "-1", "must be a port 1..65535"),
    ("--osc-port", "nine", "must be a port 1..65535"),
    ("--osc-reply", "0", "the OSC reply port must be within 1..65535, got 0"),
    ("--osc-reply", "127.0.0.1:65536", "the OSC reply port must be within 1..65535, got 65536"),
    ("--osc-reply", "studio:", "must be PORT or HOST:PORT"),
])
def test_a_bad_port_option_is_refused_in_one_line(option, value, expected, tmp_path):
    result = samstream(*serve_file("--out", str(tmp_path), f"{option}={value}"))
    assert_one_line_error(result, option, expected)
    assert not tmp_path.joinpath("output.wav").exists()


def test_a_reply_address_beyond_loopback_needs_a_token(tmp_path):
    result = samstream(*serve_file("--out", str(tmp_path), "--osc-reply", "192.0.2.7:9002"))
    assert_one_line_error(result, "192.0.2.7", "give --token")


@pytest.mark.parametrize("kind, option, surface", [
    (socket.SOCK_DGRAM, "--osc-port", "OSC"),
    (socket.SOCK_STREAM, "--ws-port", "WebSocket"),
])
def test_a_port_already_in_use_is_named(kind, option, surface, tmp_path):
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        taken = holder.getsockname()[1]
        other = "--ws-port" if option == "--osc-port" else "--osc-port"
        result = samstream(*serve_file("--out", str(tmp_path), option, str(taken), other, "0"))
    assert_one_line_error(result, surface, f"port {taken}", "already in use")


@pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("oscdump") is None,
                    reason="needs liblo-tools' oscsend and oscdump")
def test_oscsend_prompts_and_refusals_reach_oscdump_through_the_live_bridge(tmp_path):
    """The real bridge and model, the example streamed in real time; oscsend drives, oscdump listens."""
    osc_port = free_port(socket.SOCK_DGRAM)
    with OscDump() as dump:
        process = subprocess.Popen(
            [sys.executable, "-m", "samstream.plugin_host.cli",
             *serve_file("--out", str(tmp_path), "--realtime", "--hold", "--osc-port", str(osc_port),
                         "--ws-port", "0", "--osc-reply", str(dump.port))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            banner = process.stdout.readline()
            assert "latency" in banner, banner + process.stderr.read()[-2000:]
            assert f"OSC feedback to udp://127.0.0.1:{dump.port}" in banner
            assert dump.wait_for("/sam/prompt/text") == 's ""'
            oscsend(osc_port, "/sam/prompt/text", "s", "speech")
            dump.wait_for("/sam/prompt/text", '"speech"')
            oscsend(osc_port, "/sam/mix", "f", "5")
            assert "/sam/mix must be within 0..1" in dump.wait_for("/sam/error")
            refused = len(dump.lines)
            oscsend(osc_port, "/sam/prompt/span", "ff", "0", "100000")  # ends far in the future: refused
            assert "the stream is at" in dump.wait_for("/sam/error", since=refused)
            time.sleep(2.0)  # the file plays in real time: let 2 s of it into the history
            oscsend(osc_port, "/sam/prompt/span", "ff", "-1.5", "-0.5")  # the last second but one: taken
            dump.wait_for("/sam/prompt/spans", '"positive": true')
            cleared = len(dump.lines)
            oscsend(osc_port, "/sam/prompt/clear")
            assert dump.wait_for("/sam/prompt/text", since=cleared) == 's ""'
            dump.wait_for("/sam/meter/target")
            oscsend(osc_port, "/sam/status")
            # Under a minute streamed: the rate is the misses so far (a loaded machine may miss a few).
            status = dump.wait_for("/sam/status")
            misses, rate = re.search(r'"misses" (\d+) "misses_per_minute" ([\d.]+)', status).groups()
            assert float(rate) == float(misses)
        finally:
            process.terminate()
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-2000:]
    assert "stopped after" in out
