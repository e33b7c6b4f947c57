"""The OSC surface over real UDP: liblo's oscsend, python-osc clients and hand-made datagrams."""
from __future__ import annotations

import functools
import shutil
import socket
import struct
import subprocess
import time

import pytest
from pythonosc import osc_message_builder
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types
from pythonosc.udp_client import SimpleUDPClient

from samstream.plugin_host.control import ControlError
from samstream.plugin_host.osc_server import OscServer
from tests.plugin_host.conftest import free_port

pytestmark = pytest.mark.timeout(30)


def message(path: str, *args, types: str | None = None) -> bytes:
    builder = osc_message_builder.OscMessageBuilder(path)
    for index, value in enumerate(args):
        builder.add_arg(value, types[index] if types else None)
    return builder.build().dgram


def bundle(timestamp: float, *contents: bytes) -> bytes:
    """A bundle of ready datagrams (messages or bundles); 0 is python-osc's "immediately"."""
    head = b"#bundle\x00" + osc_types.write_date(timestamp)
    return head + b"".join(struct.pack(">i", len(content)) + content for content in contents)


class Client:
    """One UDP socket that sends to the server and reads what comes back."""

    def __init__(self, port: int):
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def close(self) -> None:
        self.sock.close()

    def send(self, path: str, *args, types: str | None = None) -> None:
        self.sock.sendto(message(path, *args, types=types), self.server)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def receive(self, timeout: float) -> tuple[str, list] | None:
        self.sock.settimeout(max(timeout, 1e-3))
        try:
            data, _ = self.sock.recvfrom(65536)
        except TimeoutError:
            return None
        parsed = OscMessage(data)
        return parsed.address, list(parsed.params)

    def collect(self, seconds: float) -> list[tuple[str, list]]:
        received, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is not None:
                received.append(reply)
        return received

    def expect(self, path: str, timeout: float = 3.0) -> list:
        """The arguments of the next message at ``path``; other messages are passed over."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is not None and reply[0] == path:
                return reply[1]
        raise AssertionError(f"no {path} within {timeout} s")

    def status(self, timeout: float = 3.0) -> dict:
        """Ask for /sam/status; its reply also says every earlier datagram was handled."""
        self.send("/sam/status")
        args = self.expect("/sam/status", timeout)
        return dict(zip(args[::2], args[1::2], strict=True))

    def status_eventually(self, timeout: float = 5.0) -> dict:
        """/sam/status asked again until answered: a sender over its rate limit is refused for a while."""
        end = time.monotonic() + timeout
        while True:
            try:
                return self.status(0.5)
            except AssertionError:
                if time.monotonic() > end:
                    raise


@pytest.fixture
def server(controller):
    with OscServer(controller, port=0) as running:
        yield running


@pytest.fixture
def client(server):
    connected = Client(server.port)
    yield connected
    connected.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools' oscsend is not installed")
def test_liblo_oscsend_changes_the_state(server, controller):
    def oscsend(*arguments):
        subprocess.run(["oscsend", "127.0.0.1", str(server.port), *arguments], check=True, timeout=10)

    oscsend("/sam/prompt/text", "s", "crowd noise")
    assert wait_for(lambda: controller.state()["/sam/prompt/text"] == "crowd noise")
    oscsend("/sam/mix", "f", "0.5")
    assert wait_for(lambda: controller.state()["/sam/mix"] == 0.5)
    oscsend("/sam/bypass", "i", "1")
    assert wait_for(lambda: controller.state()["/sam/bypass"] == 1)
    oscsend("/sam/prompt/clear")
    assert wait_for(lambda: controller.state()["/sam/prompt/text"] == "")
    assert server.refused == 0 and server.received == 4


def test_python_osc_client_sets_parameters(server, controller, client):
    sender = SimpleUDPClient("127.0.0.1", server.port)
    sender.send_message("/sam/mode", "remove")
    sender.send_message("/sam/target/gain", -6.0)
    sender.send_message("/sam/prompt/span", [1.0, 2.5])
    sender.send_message("/sam/prompt/visual/box", [0.1, 0.2, 0.3, 0.4])
    sender.send_message("/sam/steps", 2)
    assert wait_for(lambda: controller.state()["/sam/steps"] == 2)
    state = controller.state()
    assert state["/sam/mode"] == "remove" and state["/sam/target/gain"] == -6.0
    assert state["/sam/prompt/spans"] == [{"start": 1.0, "stop": 2.5, "positive": True}]
    assert state["/sam/prompt/visual/box"] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_status_and_state_replies(client, controller):
    status = client.status()
    assert status["latency_ms"] == pytest.approx(21.3, abs=1e-4)
    assert status["xruns"] == 0 and isinstance(status["xruns"], int)
    assert status["prompt"] == "" and status["confidence"] == "none" and status["running"] == 1
    client.send("/sam/mix", 0.25)
    client.send("/sam/state")
    args = client.expect("/sam/state")
    state = dict(zip(args[::2], args[1::2], strict=True))
    assert state["/sam/mix"] == 0.25 and state["/sam/mode"] == "extract"
    assert state["/sam/prompt/visual/box"] == "none" and state["/sam/prompt/spans"] == "[]"
    client.send("/sam/tree")
    assert "/sam/mix" in client.expect("/sam/tree")[0]


def test_subscription_pushes_state_changes_and_meters(client, controller, recording_target):
    client.send("/sam/subscribe", 1)
    pushed = {}
    while len(pushed) < len(controller.state()):
        path, args = client.receive(3.0) or pytest.fail(f"state push incomplete: {pushed}")
        if not path.startswith(("/sam/meter", "/sam/confidence")):
            pushed[path] = args
    assert pushed["/sam/mode"] == ["extract"] and pushed["/sam/mix"] == [1.0]
    assert pushed["/sam/prompt/visual/box"] == [] and pushed["/sam/prompt/spans"] == ["[]"]

    meters = client.collect(1.0)
    targets = [args for path, args in meters if path == "/sam/meter/target"]
    assert len(targets) >= 8 and targets[0] == [-20.0]
    assert sum(path == "/sam/meter/residual" for path, _ in meters) >= 8
    # Not known (None) is sent without arguments, so that a display drops its last number.
    assert [args for path, args in meters if path == "/sam/confidence"][:1] == [[]]

    recording_target.meters = lambda: {"target": float("-inf"), "residual": -3.0, "confidence": 0.75}
    assert client.expect("/sam/confidence") == [0.75]
    assert client.expect("/sam/meter/target") == [-120.0]

    client.send("/sam/mix", 0.5)
    assert client.expect("/sam/mix") == [0.5]
    client.send("/sam/prompt/visual/box", 0.5, 0.5, 0.2, 0.2)
    assert client.expect("/sam/prompt/visual/box") == pytest.approx([0.5, 0.5, 0.2, 0.2])

    controller.apply("/sam/mode", ["remove"])  # a change from another surface is pushed too
    assert client.expect("/sam/mode") == ["remove"]
    client.send_raw(bundle(time.time() + 5.0, message("/sam/steps", 2)))
    client.status()
    recording_target.seconds = 6.0
    assert controller.run_due() == 1
    assert client.expect("/sam/steps") == [2]

    client.send("/sam/subscribe", 0)
    client.status()
    client.collect(0.1)  # a meter tick that raced the unsubscribe
    assert client.collect(0.3) == []


def test_future_bundle_is_held_until_the_stream_reaches_it(client, controller, recording_target):
    client.send_raw(bundle(time.time() + 5.0, message("/sam/mix", 0.25), message("/sam/mode", "remove")))
    client.status()
    assert controller.state()["/sam/mix"] == 1.0
    recording_target.seconds = 4.0
    assert controller.run_due() == 0
    recording_target.seconds = 6.0
    assert controller.run_due() == 2
    assert controller.state()["/sam/mix"] == 0.25 and controller.state()["/sam/mode"] == "remove"


def test_immediate_and_past_bundles_apply_at_once(client, controller):
    client.send_raw(bundle(0, message("/sam/mix", 0.75)))  # the "immediately" tag, 1
    client.status()
    assert controller.state()["/sam/mix"] == 0.75
    client.send_raw(bundle(time.time() - 60.0, message("/sam/steps", 2)))
    client.status()
    assert controller.state()["/sam/steps"] == 2


def test_nested_bundles_and_a_bad_element_does_not_stop_the_others(client, controller, recording_target):
    inner_future = bundle(time.time() + 5.0, message("/sam/bypass", 1))
    inner_now = bundle(0, message("/sam/mode", "remove"))
    client.send_raw(bundle(0, message("/sam/mix", 2.0), inner_now, inner_future, message("/sam/mix", 0.5)))
    assert "/sam/mix must be within 0..1" in client.expect("/sam/error")[0]
    client.status()
    state = controller.state()
    assert state["/sam/mix"] == 0.5 and state["/sam/mode"] == "remove" and state["/sam/bypass"] == 0
    recording_target.seconds = 10.0
    assert controller.run_due() == 1 and controller.state()["/sam/bypass"] == 1


def test_a_nested_bundle_is_never_earlier_than_the_bundle_around_it(client, controller, recording_target):
    client.send_raw(bundle(time.time() + 5.0, bundle(0, message("/sam/mix", 0.5))))
    client.status()
    assert controller.state()["/sam/mix"] == 1.0
    recording_target.seconds = 10.0
    assert controller.run_due() == 1 and controller.state()["/sam/mix"] == 0.5


MIX = message("/sam/mix", 0.25)
MALFORMED = {
    "garbage": b"\x00\xffnot osc at all",
    "empty": b"",
    "truncated address": b"/sam/mi",
    "truncated float": MIX[:-4],
    "truncated type tags": MIX[:14],
    "trailing bytes": MIX + b"\x00\x00\x00\x00",
    "not utf-8": b"/sam/prompt/text\x00\x00\x00\x00,s\x00\x00\xff\xfe\x00\x00",
    "wrong type": message("/sam/mix", "loud"),
    "bool for a number": message("/sam/mix", True),
    "blob for a number": message("/sam/mix", b"\x01\x02", types="b"),
    "unknown path": message("/sam/nope", 1.0),
    "mix out of range": message("/sam/mix", 2.0),
    "steps out of range": message("/sam/steps", 99),
    "unknown mode": message("/sam/mode", "sideways"),
    "not finite": message("/sam/target/gain", float("nan")),
    "too many args": message("/sam/mix", 0.5, 0.5),
    "too few args": message("/sam/prompt/span", 1.0),
    "args to a query": message("/sam/state", 1),
    "huge string": message("/sam/prompt/text", "x" * 300),
    "oversized datagram": message("/sam/prompt/text", "y" * 9000),
    "bundle without time tag": b"#bundle\x00\x00\x00",
    "bundle with a bad size": bundle(0, MIX)[:16] + struct.pack(">i", 4000) + MIX,
    "deeply nested bundle": functools.reduce(lambda inner, _: bundle(0, inner), range(10), MIX),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_answered_with_an_error_and_changes_nothing(data, server, client, controller,
                                                                       recording_target):
    before = controller.state()
    client.send_raw(data)
    reason = client.expect("/sam/error")
    assert len(reason) == 1 and isinstance(reason[0], str) and reason[0]
    assert client.status()["running"] == 1
    assert controller.state() == before and recording_target.calls == []
    assert server.refused >= 1


def test_a_flood_is_rate_limited_and_the_server_keeps_answering(server, client, controller):
    before = controller.state()
    for index in range(5000):
        client.send_raw(b"garbage %d" % index if index % 2 else message("/sam/mix", 5.0))
    errors = [args for path, args in client.collect(0.5) if path == "/sam/error"]
    assert 1 <= len(errors) <= 60  # 20 at once, then 20/s
    assert client.status_eventually()["running"] == 1
    assert controller.state() == before


def test_a_sender_over_its_message_rate_is_refused(server, client, controller):
    steps = message("/sam/steps", 2)  # 24 bytes with its size: 340 to a datagram
    for _ in range(4):
        client.send_raw(bundle(0, *[steps] * 340))
    reasons = [args[0] for path, args in client.collect(0.5) if path == "/sam/error"]
    assert any(reason.startswith("rate limited") for reason in reasons)
    assert client.status_eventually()["running"] == 1
    assert controller.state()["/sam/steps"] == 2


def test_the_receive_loop_survives_a_failing_target(server, client, controller, recording_target):
    def broken(settings):
        raise RuntimeError("bridge is gone")

    recording_target.set_mix = broken
    client.send("/sam/mix", 0.5)
    assert "internal error" in client.expect("/sam/error")[0]
    assert client.status()["running"] == 1
    client.send_raw(bundle(0, message("/sam/mix", 0.5), message("/sam/steps", 2)))
    assert "internal error" in client.expect("/sam/error")[0]
    client.status()
    assert controller.state()["/sam/steps"] == 2


def test_token_guards_every_message_until_auth(controller):
    with OscServer(controller, port=0, token="s3cret") as server:
        client = Client(server.port)
        try:
            client.send("/sam/mix", 0.5)
            assert client.expect("/sam/error") == ["unauthorized: send /sam/auth with the token first"]
            client.send("/sam/status")
            assert client.expect("/sam/error")[0].startswith("unauthorized")
            client.send("/sam/auth", "wrong")
            assert client.expect("/sam/error") == ["unauthorized: wrong token"]
            client.send("/sam/auth", 12)
            assert client.expect("/sam/error")
            assert controller.state()["/sam/mix"] == 1.0
            client.send("/sam/auth", "s3cret")
            assert client.expect("/sam/auth") == [1]
            client.send("/sam/mix", 0.5)
            assert client.status()["running"] == 1
            assert controller.state()["/sam/mix"] == 0.5
        finally:
            client.close()


def test_token_guesses_are_limited(controller):
    with OscServer(controller, port=0, token="s3cret") as server:
        client = Client(server.port)
        try:
            for _ in range(8):
                client.send("/sam/auth", "guess")
            reasons = [args[0] for path, args in client.collect(0.5) if path == "/sam/error"]
            assert "unauthorized: too many attempts, wait a second" in reasons
        finally:
            client.close()


def test_binding_beyond_loopback_needs_a_token(controller):
    with pytest.raises(ControlError, match="token"):
        OscServer(controller, host="0.0.0.0", port=free_port(socket.SOCK_DGRAM))
    OscServer(controller, host="0.0.0.0", token="s3cret")  # constructed, never started


def test_ports_subscriber_cap_and_stop(controller):
    port = free_port(socket.SOCK_DGRAM)
    server = OscServer(controller, port=port).start()
    assert server.port == port
    clients = [Client(port) for _ in range(33)]
    try:
        for each in clients:
            each.send("/sam/subscribe", 1)
        assert "too many subscribers" in clients[-1].expect("/sam/error")[0]
    finally:
        for each in clients:
            each.close()
        server.stop()
        server.stop()
    with pytest.raises(ValueError, match="meter_hz"):
        OscServer(controller, port=0, meter_hz=2.0)
