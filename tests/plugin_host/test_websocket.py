"""The WebSocket control surface with a real websockets client and real HTTP requests."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from samstream.plugin_host.control import ControlError
from samstream.plugin_host.ws_server import WebSocketServer

pytestmark = pytest.mark.timeout(60)

STATUS = {"op": "get", "path": "/sam/status"}


@pytest.fixture
def server(controller):
    with WebSocketServer(controller, port=0) as running:
        yield running


@contextlib.contextmanager
def open_client(server, token=None, **options):
    """A connected client and the state frame the server greets it with."""
    query = f"?token={token}" if token else ""
    with connect(f"ws://127.0.0.1:{server.port}/ws{query}", open_timeout=5, **options) as client:
        yield client, json.loads(client.recv(timeout=5))


def send(client, message) -> None:
    client.send(message if isinstance(message, (str, bytes)) else json.dumps(message))


def receive(client, op, timeout=3.0) -> dict:
    """The next frame with this op; other frames (pushed state, meters) are passed over."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(client.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["op"] == op:
            return message


def drain(client, quiet=0.4) -> list[dict]:
    """Every frame until the server has been quiet for ``quiet`` seconds."""
    frames = []
    while True:
        try:
            frames.append(json.loads(client.recv(timeout=quiet)))
        except TimeoutError:
            return frames


def answers(client, timeout=5.0) -> dict:
    """The server still works for this client: a status get is answered (after any rate-limit refill)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send(client, STATUS)
        for frame in drain(client, quiet=0.3):
            if frame["op"] == "reply":
                return frame
        time.sleep(0.3)
    raise AssertionError("the server stopped answering")


def test_connect_sends_state_and_tree(server, controller):
    with open_client(server) as (_, greeting):
        assert greeting["state"] == controller.state()
        assert greeting["tree"] == controller.tree()
        assert "/sam/prompt/text" in greeting["tree"]


@pytest.mark.parametrize(("path", "value", "key", "expected"), [
    ("/sam/mode", "remove", "/sam/mode", "remove"),
    ("/sam/mix", 0.25, "/sam/mix", 0.25),
    ("/sam/bypass", 1, "/sam/bypass", 1),
    ("/sam/prompt/text", "dog barking", "/sam/prompt/text", "dog barking"),
    ("/sam/prompt/span", [1.0, 2.5], "/sam/prompt/spans", [{"start": 1.0, "stop": 2.5, "positive": True}]),
    ("/sam/prompt/span/neg", [3, 4], "/sam/prompt/spans", [{"start": 3.0, "stop": 4.0, "positive": False}]),
    ("/sam/prompt/visual/box", [0.25, 0.5, 0.25, 0.5], "/sam/prompt/visual/box", [0.25, 0.5, 0.25, 0.5]),
    ("/sam/steps", 2, "/sam/steps", 2),
])
def test_set_changes_state_and_pushes_it_to_every_client(server, controller, path, value, key, expected):
    with open_client(server) as (sender, _), open_client(server) as (watcher, _):
        send(sender, {"op": "set", "path": path, "value": value})
        pushed = receive(watcher, "state")
        assert pushed["state"][key] == expected
        assert controller.state()[key] == expected
        assert receive(sender, "state")["state"] == pushed["state"]


@pytest.mark.parametrize("clear", [{}, {"value": None}, {"value": []}])
def test_clear_takes_no_value(server, controller, recording_target, clear):
    controller.apply("/sam/prompt/text", ["speech"])
    controller.apply("/sam/prompt/span", [1.0, 2.0])
    with open_client(server) as (client, greeting):
        assert greeting["state"]["/sam/prompt/text"] == "speech"
        send(client, {"op": "set", "path": "/sam/prompt/clear", **clear})
        state = receive(client, "state")["state"]
        assert state["/sam/prompt/text"] == "" and state["/sam/prompt/spans"] == []
        assert recording_target.calls[-1] == ("clear",)


def test_changes_from_another_thread_are_pushed(server, controller):
    with open_client(server) as (client, _):
        worker = threading.Thread(target=controller.apply, args=("/sam/mix", [0.5]))
        worker.start()
        worker.join()
        assert receive(client, "state")["state"]["/sam/mix"] == 0.5


def test_get_status_replies_to_the_sender(server, recording_target):
    with open_client(server) as (client, _):
        send(client, STATUS)
        reply = receive(client, "reply")
        assert reply["path"] == "/sam/status"
        assert reply["value"] == recording_target.status()
        send(client, {"op": "get", "path": "/sam/tree"})
        assert "/sam/mix" in receive(client, "reply")["value"]


def test_subscription_streams_meters_until_unsubscribed(server):
    with open_client(server) as (client, _):
        send(client, {"op": "set", "path": "/sam/subscribe", "value": 1})
        start = time.monotonic()
        meters = []
        while time.monotonic() - start < 1.0:
            frame = json.loads(client.recv(timeout=1))
            if frame["op"] == "meter":
                meters.append(frame)
        assert len(meters) >= 8
        assert meters[-1]["target"] == -20.0 and meters[-1]["residual"] == -30.0
        assert meters[-1]["confidence"] is None
        assert meters[-1]["status"] == {"latency_ms": 21.3, "xruns": 0, "misses": 0}
        send(client, {"op": "set", "path": "/sam/subscribe", "value": 0})
        drain(client, quiet=0.3)  # frames already on their way
        assert [f for f in drain(client, quiet=0.4) if f["op"] == "meter"] == []


def test_silent_meters_are_sent_as_null_not_infinity(server, recording_target):
    recording_target.meters = lambda: {"target": float("-inf"), "residual": -12.0, "confidence": float("nan"),
                                       "input": float("-inf"), "output": -6.0}
    with open_client(server) as (client, _):
        send(client, {"op": "set", "path": "/sam/subscribe", "value": 1})
        text = client.recv(timeout=2)
        while json.loads(text)["op"] != "meter":
            text = client.recv(timeout=2)

        def strict(constant):
            raise AssertionError(f"{constant} is not JSON a browser can parse")
        frame = json.loads(text, parse_constant=strict)
        assert frame["target"] is None and frame["confidence"] is None and frame["input"] is None
        assert frame["output"] == -6.0


def test_http_serves_page_tree_state_and_status(server, controller):
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(base + "/", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert 'id="prompt-text"' in page and "<script>" in page
    for path, expected in (("/tree", controller.tree()), ("/state", controller.state()),
                           ("/status", controller.status())):
        with urllib.request.urlopen(base + path, timeout=5) as response:
            assert response.headers["Content-Type"] == "application/json"
            assert json.loads(response.read()) == expected
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "/secrets", timeout=5)
    assert refused.value.code == 404
    refused.value.close()


BAD_FRAMES = [
    ("not json {", "not JSON"),
    (b"\x00\x01binary", "binary"),
    ("[1, 2, 3]", "JSON object"),
    ('"a string"', "JSON object"),
    ("[" * 8000 + "]" * 8000, ""),  # nesting deep enough to exhaust a recursive parser
    ({"op": "delete", "path": "/sam/mix"}, "unknown op"),
    ({"path": "/sam/mix", "value": 0.5}, "unknown op"),
    ({"op": "set", "value": 0.5}, "path"),
    ({"op": "set", "path": "/sam/nope", "value": 1}, "unknown path"),
    ({"op": "set", "path": 7, "value": 1}, "path"),
    ({"op": "set", "path": "/sam/mix", "value": "loud"}, "must be a number"),
    ('{"op": "set", "path": "/sam/mix", "value": NaN}', "finite"),
    ('{"op": "set", "path": "/sam/mix", "value": Infinity}', "finite"),
    ({"op": "set", "path": "/sam/mix", "value": 1.5}, "0..1"),
    ({"op": "set", "path": "/sam/mix", "value": {"a": 1}}, "must be a number"),
    ({"op": "set", "path": "/sam/mix"}, "takes 1 argument"),
    ({"op": "set", "path": "/sam/mode", "value": "karaoke"}, "extract"),
    ({"op": "set", "path": "/sam/bypass", "value": True}, "must be a number"),
    ({"op": "set", "path": "/sam/bypass", "value": 2}, "0 or 1"),
    ({"op": "set", "path": "/sam/steps", "value": 99}, "1..2"),
    ({"op": "set", "path": "/sam/steps", "value": 1.5}, "whole number"),
    ({"op": "set", "path": "/sam/target/gain", "value": 60}, "dB"),
    ({"op": "set", "path": "/sam/prompt/text", "value": "x" * 300}, "longer than 256"),
    ({"op": "set", "path": "/sam/prompt/text", "value": ["a", "b"]}, "takes 1 argument"),
    ({"op": "set", "path": "/sam/prompt/span", "value": 1.0}, "takes 2 argument"),
    ({"op": "set", "path": "/sam/prompt/span", "value": [2.0, 1.0]}, "end after"),
    ({"op": "set", "path": "/sam/prompt/visual/box", "value": [0, 0, 0, 0.5]}, "positive"),
    ({"op": "set", "path": "/sam/prompt/clear", "value": [1]}, "takes 0 argument"),
    ({"op": "set", "path": "/sam/subscribe", "value": 5}, "0 or 1"),
    ({"op": "get", "path": "/sam/nothing"}, "nothing to get"),
]


@pytest.mark.parametrize(("frame", "reason"), BAD_FRAMES, ids=[str(i) for i in range(len(BAD_FRAMES))])
def test_malformed_frames_are_refused_and_change_nothing(server, controller, recording_target, frame, reason):
    with open_client(server) as (client, greeting):
        before, calls = controller.state(), list(recording_target.calls)
        send(client, frame)
        error = receive(client, "error")
        assert reason in error["reason"]
        assert controller.state() == before == greeting["state"]
        assert recording_target.calls == calls
        answers(client)


def test_a_change_the_bridge_refuses_is_reported_and_the_connection_stays(server, controller, recording_target):
    def refuse(text):
        raise RuntimeError("the text encoder is not loaded")
    recording_target.set_text = refuse
    before = controller.state()
    with open_client(server) as (client, _):
        send(client, {"op": "set", "path": "/sam/prompt/text", "value": "dog barking"})
        assert "the text encoder is not loaded" in receive(client, "error")["reason"]
        assert controller.state() == before
        answers(client)


def test_oversize_frame_closes_only_that_connection(server, controller, recording_target):
    before = controller.state()
    with open_client(server) as (client, _):
        send(client, json.dumps({"op": "set", "path": "/sam/prompt/text", "value": "x" * 20000}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.recv(timeout=3)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    assert controller.state() == before and recording_target.calls == []
    with open_client(server) as (other, _):
        answers(other)


def test_flood_of_bad_frames_gets_rate_limited_errors(server, controller, recording_target):
    before = controller.state()
    with open_client(server, max_queue=None) as (client, _):
        for _ in range(2000):
            send(client, {"op": "set", "path": "/sam/mix", "value": "loud"})
        errors = [frame for frame in drain(client, quiet=0.5) if frame["op"] == "error"]
        assert 1 <= len(errors) < 200, len(errors)
        assert controller.state() == before and recording_target.calls == []
        answers(client)


def test_flood_of_requests_is_cut_at_the_rate_limit(server):
    with open_client(server, max_queue=None) as (client, _):
        for _ in range(2000):
            send(client, STATUS)
        frames = drain(client, quiet=0.5)
        replies = [frame for frame in frames if frame["op"] == "reply"]
        errors = [frame for frame in frames if frame["op"] == "error"]
        assert 100 <= len(replies) < 2000, len(replies)  # about 200 a second get through
        assert errors and all("rate limit" in frame["reason"] for frame in errors)
        assert len(errors) < 200
        answers(client)


def test_token_is_required_when_configured(controller):
    with WebSocketServer(controller, port=0, token="s3cret") as server:
        with pytest.raises(InvalidStatus) as refused, open_client(server):
            pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus), open_client(server, token="wrong"):
            pass
        with open_client(server, token="s3cret") as (client, greeting):
            assert greeting["op"] == "state"
            answers(client)
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(urllib.error.HTTPError) as http_refused:
            urllib.request.urlopen(base + "/", timeout=5)
        assert http_refused.value.code == 401
        http_refused.value.close()
        with urllib.request.urlopen(base + "/?token=s3cret", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(base + "/tree?token=s3cret", timeout=5) as response:
            assert json.loads(response.read()) == controller.tree()


def test_binding_beyond_loopback_requires_a_token(controller):
    with pytest.raises(ControlError, match="token"):
        WebSocketServer(controller, host="0.0.0.0", port=0)


def test_other_sites_cannot_drive_the_controls(server):
    # A page from another origin in the user's browser, and a DNS-rebound host name.
    url = f"ws://127.0.0.1:{server.port}/ws"
    with pytest.raises(InvalidStatus) as refused, connect(url, origin="http://evil.example", open_timeout=5):
        pass
    assert refused.value.response.status_code == 403
    with connect(url, origin=f"http://127.0.0.1:{server.port}", open_timeout=5) as same_origin:
        assert json.loads(same_origin.recv(timeout=5))["op"] == "state"
    request = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    request.request("GET", "/state", headers={"Host": f"evil.example:{server.port}"})
    assert request.getresponse().status == 403
    request.close()


def test_stop_closes_clients_and_the_port_and_is_idempotent(controller):
    server = WebSocketServer(controller, port=0).start()
    port = server.port
    # A socket that never sends its request (browsers open spare ones) must not hold stop().
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    with open_client(server) as (client, _):
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3.0
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=3)
    idle.close()
    server.stop()
    with pytest.raises(OSError), connect(f"ws://127.0.0.1:{port}/ws", open_timeout=2):
        pass
    controller.apply("/sam/mix", [0.5])  # the listener is gone: nothing to push to, nothing raised
    with server, open_client(server) as (_, greeting):  # and the same server starts again
        assert greeting["state"]["/sam/mix"] == 0.5


def test_port_in_use_is_reported_by_start(server, controller):
    with pytest.raises(OSError, match="cannot listen"):
        WebSocketServer(controller, port=server.port).start()
