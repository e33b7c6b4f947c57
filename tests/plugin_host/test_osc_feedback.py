"""OSC feedback that ordinary OSC tools receive: liblo's oscsend as the sender (a random
source port, gone once sent) and liblo's oscdump listening on a fixed port, as a DAW's
feedback port does."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest

from samstream.plugin_host.control import ControlError
from samstream.plugin_host.osc_feedback import parse_reply_address
from samstream.plugin_host.osc_server import OscServer
from tests.plugin_host.conftest import free_port
from tests.plugin_host.test_osc import Client

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("oscdump") is None,
                       reason="needs liblo-tools' oscsend and oscdump"),
]


def oscsend(port: int, path: str, types: str = "", *args: str) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), path, *([types] if types else []), *args],
                   check=True, timeout=10)


class OscDump:
    """liblo's ``oscdump -L`` on a free UDP port; its lines as they come, as (path, arguments)."""

    def __init__(self):
        self.port = free_port(socket.SOCK_DGRAM)
        self.process = subprocess.Popen(["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.lines: list[tuple[str, str]] = []
        threading.Thread(target=self._read, daemon=True).start()
        end = time.monotonic() + 10
        while not self.lines:  # listening once it echoes a probe
            assert time.monotonic() < end, "oscdump never started listening"
            oscsend(self.port, "/probe")
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.process.stdout:  # "<time tag> <path> <types> <arguments>"
            _, path, arguments = (line.rstrip("\n") + " ").split(" ", 2)
            self.lines.append((path, arguments.strip()))

    def wait_for(self, path: str, contains: str = "", timeout: float = 5.0, since: int = 0) -> str:
        """The arguments of the first line at ``path`` that contain ``contains``, from line ``since`` on."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for seen, arguments in self.lines[since:]:
                if seen == path and contains in arguments:
                    return arguments
            time.sleep(0.02)
        raise AssertionError(f"oscdump never showed {path} {contains!r}; it showed {self.lines[-20:]}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def __enter__(self) -> OscDump:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def served_client(controller, **options):
    """An OscServer and a python-osc-style client of it (the sender's own port gets the replies)."""
    with OscServer(controller, port=0, **options) as server:
        client = Client(server.port)
        try:
            yield server, client
        finally:
            client.close()


def test_the_reply_address_gets_errors_replies_state_and_meters_of_oscsend(controller):
    with OscDump() as dump, OscServer(controller, port=0, reply_to=("127.0.0.1", dump.port)) as server:
        assert dump.wait_for("/sam/mode") == 's "extract"'  # the whole state once the server starts
        oscsend(server.port, "/sam/mix", "f", "2")
        assert "/sam/mix must be within 0..1, got 2" in dump.wait_for("/sam/error")
        assert controller.state()["/sam/mix"] == 1.0
        oscsend(server.port, "/sam/mode", "s", "remove")
        dump.wait_for("/sam/mode", '"remove"')
        oscsend(server.port, "/sam/status")
        assert '"latency_ms" 21.299999 "latency_samples" 1024' in dump.wait_for("/sam/status")
        assert dump.wait_for("/sam/meter/target") == "f -20.000000"
        assert dump.wait_for("/sam/confidence") == ""  # not known: no arguments
        oscsend(server.port, "/sam/subscribe", "i", "0")  # the reply address is not a subscription to end
        time.sleep(0.2)
        count = len([line for line in dump.lines if line[0] == "/sam/meter/target"])
        time.sleep(0.3)
        assert len([line for line in dump.lines if line[0] == "/sam/meter/target"]) > count


def test_subscribe_with_a_host_and_port_feeds_oscdump_until_unsubscribed(controller):
    with OscDump() as dump, OscServer(controller, port=0) as server:
        oscsend(server.port, "/sam/subscribe", "isi", "1", "127.0.0.1", str(dump.port))
        assert dump.wait_for("/sam/mix") == "f 1.000000"
        dump.wait_for("/sam/meter/residual", "-30.0")
        oscsend(server.port, "/sam/mix", "f", "0.25")
        dump.wait_for("/sam/mix", "0.25")
        oscsend(server.port, "/sam/subscribe", "isi", "0", "127.0.0.1", str(dump.port))
        time.sleep(0.2)  # a meter tick may race the unsubscribe
        count = len(dump.lines)
        time.sleep(0.4)
        assert len(dump.lines) == count
        assert server.refused == 0


@pytest.mark.parametrize("args, reason", [
    ([1, "127.0.0.1", 70000], "port must be within 1..65535, got 70000"),
    ([1, "127.0.0.1", 0], "port must be within 1..65535, got 0"),
    ([1, "192.0.2.7", 9002], "leaves this machine: give --token"),
    ([1, "127.0.0.1"], "takes 1 or 3 argument(s)"),
    ([1, 9002, "127.0.0.1"], "argument 2 must be a string"),
])
def test_a_bad_subscribe_destination_is_refused_to_the_sender(args, reason, controller):
    with served_client(controller) as (server, client):
        client.send("/sam/subscribe", *args)
        assert reason in client.expect("/sam/error")[0]
        assert server.refused == 1


def test_a_subscribe_destination_is_an_address_not_a_name_to_look_up(controller):
    # The receive thread must not wait on DNS; with a token, any address is allowed.
    with served_client(controller, token="s3cret") as (_, client):
        client.send("/sam/auth", "s3cret")
        assert client.expect("/sam/auth") == [1]
        client.send("/sam/subscribe", 1, "feedback.example", 9002)
        assert "cannot send OSC to feedback.example:9002" in client.expect("/sam/error")[0]


def test_the_controller_checks_both_subscribe_forms(controller):
    controller.apply("/sam/subscribe", [1])
    controller.apply("/sam/subscribe", [1, "127.0.0.1", 65535])
    with pytest.raises(ControlError, match="1..65535"):
        controller.apply("/sam/subscribe", [1, "127.0.0.1", 65536])


def test_a_reply_address_beyond_loopback_needs_a_token(controller):
    with pytest.raises(ControlError, match="give --token"):
        OscServer(controller, port=0, reply_to=("192.0.2.7", 9002))
    OscServer(controller, port=0, token="s3cret", reply_to=("192.0.2.7", 9002))  # constructed, never started


@pytest.mark.parametrize("text, expected", [
    ("9002", ("127.0.0.1", 9002)),
    ("127.0.0.1:9002", ("127.0.0.1", 9002)),
    ("studio.local:9", ("studio.local", 9)),
    ("[::1]:65535", ("::1", 65535)),
])
def test_reply_addresses_are_parsed(text, expected):
    assert parse_reply_address(text) == expected


@pytest.mark.parametrize("text", ["0", "70000", "host:", ":9002", "9002x", "-1"])
def test_bad_reply_addresses_are_refused(text):
    with pytest.raises(ControlError):
        parse_reply_address(text)
