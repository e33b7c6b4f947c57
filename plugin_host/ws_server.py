"""The WebSocket control surface and the web control page, on one port.

A thin surface over ``Controller``: JSON text frames in, ``Controller.apply`` / ``query``
behind them, state pushed to every client after each accepted change and meters to the
clients that subscribed. Plain HTTP GETs on the same port serve the control page and the
tree, state and status as JSON (websockets' ``process_request`` hook answers them before
any upgrade).

Wire format (see DESIGN.md "Control contract"):

    client -> {"op": "set", "path": "/sam/mix", "value": 0.5}    value: scalar, list, or absent
              {"op": "get", "path": "/sam/status"}
    server -> {"op": "state", "state": {...}, "tree": {...}}     on connect (tree only then)
              {"op": "state", "state": {...}}                    after every accepted change
              {"op": "reply", "path": ..., "value": {...}}       answer to a get
              {"op": "meter", "target": dB, "residual": dB, "confidence": x|null, ..., "status": {...}}
              {"op": "error", "reason": "..."}                   anything refused; nothing changed

The event loop runs in a daemon thread, so the audio side never waits on a client.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import math
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING

from samstream.plugin_host.control import (
    LOOPBACK_HOSTS,
    ControlError,
    Controller,
    TokenBucket,
    check_bind,
    listen_error,
    token_matches,
)

PAGE_PATH = Path(__file__).parent / "assets" / "control.html"
METER_STATUS_FIELDS = ("latency_ms", "xruns", "misses", "misses_per_minute")
MAX_CLIENTS = 64
# A client that stops reading must not grow our memory: pushes (state, meters) skip it
# once this much is waiting in its socket buffer. Its own replies still apply backpressure.
PUSH_BUFFER_LIMIT = 256 * 1024
# stop() waits this long at most for a client that does not finish closing (an HTTP client keeping its socket).
CLOSE_TIMEOUT_S = 2.0
ERRORS_PER_SECOND = 10  # error replies are themselves rate limited, or a flood of bad frames echoes back


def _finite(value):
    """JSON-safe copy: silence meters at -inf dBFS would become ``-Infinity``, which JSON.parse rejects."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _dumps(message: dict) -> str:
    return json.dumps(_finite(message), allow_nan=False, separators=(",", ":"))


class _Client:
    def __init__(self, connection: ServerConnection, rate_per_second: float):
        self.connection = connection
        self.messages = TokenBucket(rate_per_second, now=time.monotonic())
        self.errors = TokenBucket(ERRORS_PER_SECOND, now=time.monotonic())
        self.subscribed = False


class WebSocketServer:
    """JSON control over WebSocket plus the control page over HTTP, in a background thread."""

    def __init__(self, controller: Controller, host: str = "127.0.0.1", port: int = 9001, token: str | None = None,
                 meter_hz: float = 20.0, max_message_bytes: int = 16384, rate_per_second: float = 200):
        check_bind(host, token)
        if not 10.0 <= meter_hz <= 200.0:
            raise ControlError(f"meter rate must be within 10..200 Hz, got {meter_hz:g}")
        if max_message_bytes < 1024:
            raise ControlError(f"max message size must be at least 1024 bytes, got {max_message_bytes}")
        if rate_per_second < 1:
            raise ControlError(f"rate limit must be at least 1 message per second, got {rate_per_second:g}")
        self.controller = controller
        self.host = host
        self.token = token or None
        self.meter_hz = float(meter_hz)
        self.max_message_bytes = int(max_message_bytes)
        self.rate_per_second = float(rate_per_second)
        self._requested_port = port
        self._port: int | None = None
        self._page = PAGE_PATH.read_bytes()
        self._clients: dict[ServerConnection, _Client] = {}
        self._sockets: set[ServerConnection] = set()  # every accepted socket, handshake done or not
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._remove_listener = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the WebSocket server is not listening (call start())")
        return self._port

    def start(self) -> WebSocketServer:
        """Listen in a daemon thread; returns once the port is bound (or raises why it could not be)."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._failure, self._port = None, None
        self._thread = threading.Thread(target=self._run, name="samstream-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=15.0):
            raise RuntimeError("the WebSocket server did not start within 15 s")
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            raise listen_error("WebSocket and the control page", self.host, self._requested_port,
                               self._failure) from self._failure
        self._remove_listener = self.controller.add_listener(self._on_change)
        return self

    def stop(self) -> None:
        """Close every connection and the port, and join the thread. Safe to call twice."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop already ended
        thread.join(timeout=15.0)
        self._thread = None

    def __enter__(self) -> WebSocketServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by start() when it happens before listening
            self._failure = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        sockets = self._sockets

        class Tracked(ServerConnection):
            # websockets only lists connections after their handshake; stop() needs the rest too.
            def connection_made(self, transport) -> None:
                super().connection_made(transport)
                sockets.add(self)

            def connection_lost(self, exc) -> None:
                sockets.discard(self)
                super().connection_lost(exc)

        async with serve(self._handle, self.host, self._requested_port, process_request=self._process_request,
                         max_size=self.max_message_bytes, compression=None, close_timeout=CLOSE_TIMEOUT_S,
                         create_connection=Tracked) as server:
            self._port = server.sockets[0].getsockname()[1]
            self._ready.set()
            meters = asyncio.create_task(self._meter_loop())
            await self._stopping.wait()
            meters.cancel()
            server.close()
            # A socket that never sent its request (browsers open spare ones) would hold
            # wait_closed() for the whole opening timeout: drop those at once.
            for connection in list(self._sockets):
                if connection.protocol.state is CONNECTING:
                    connection.transport.abort()
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=2 * CLOSE_TIMEOUT_S)
            except TimeoutError:
                pass  # asyncio.run cancels what is left

    # HTTP side ------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        given = parse_qs(url.query).get("token", [None])[0]
        if not token_matches(self.token, given):
            return connection.respond(401, "a token is required: add ?token=... to the URL\n")
        if self.token is None and not self._loopback_host(request.headers.get("Host", "")):
            # Without a token the loopback bind is the only protection; a foreign Host name
            # means a DNS-rebinding page is talking to us through the user's browser.
            return connection.respond(403, "this server answers only to a loopback host name\n")
        if "websocket" in request.headers.get("Upgrade", "").lower():
            origin = request.headers.get("Origin")
            # Browsers send Origin: refuse pages from other sites driving the controls.
            if origin is not None and urlsplit(origin).netloc != request.headers.get("Host"):
                return connection.respond(403, "cross-origin WebSocket refused\n")
            if len(self._clients) >= MAX_CLIENTS:
                return connection.respond(503, "too many control clients\n")
            return None
        if url.path in ("/", "/index.html", "/control.html"):
            return self._http(200, "text/html; charset=utf-8", self._page)
        documents = {"/tree": self.controller.tree, "/state": self.controller.state, "/status": self.controller.status}
        if url.path in documents:
            return self._http(200, "application/json", _dumps(documents[url.path]()).encode())
        if url.path == "/video/frame.jpg":  # the picture the page draws the visual box on
            picture = self.controller.video_picture()
            if picture is None:
                return connection.respond(404, "no video source (serve --video)\n")
            return self._http(200, "image/jpeg", picture)
        return connection.respond(404, f"nothing at {url.path[:80]}; try /, /tree, /state, /status\n")

    @staticmethod
    def _loopback_host(host_header: str) -> bool:
        name = urlsplit(f"//{host_header}").hostname or ""
        return name in LOOPBACK_HOSTS

    @staticmethod
    def _http(status: int, content_type: str, body: bytes) -> Response:
        headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                           ("Content-Length", str(len(body))), ("Content-Type", content_type),
                           ("Cache-Control", "no-store")])
        return Response(status, "OK", headers, body)

    # WebSocket side -------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        client = _Client(connection, self.rate_per_second)
        self._clients[connection] = client
        try:
            await connection.send(_dumps({"op": "state", "state": self.controller.state(),
                                          "tree": self.controller.tree()}))
            async for frame in connection:
                reply = self._answer(client, frame)
                if reply is not None:
                    await connection.send(_dumps(reply))
        except ConnectionClosed:
            pass  # includes frames over max_size: websockets closes those with code 1009
        finally:
            self._clients.pop(connection, None)

    def _answer(self, client: _Client, frame) -> dict | None:
        """The reply to one frame (None: nothing to say). Errors go through their own rate limit."""
        if not client.messages.take(time.monotonic()):
            reason = f"rate limit: at most {self.rate_per_second:g} messages per second; message dropped"
            return self._error(client, reason)
        try:
            return self._dispatch(client, frame)
        except ControlError as error:
            return self._error(client, str(error))
        except Exception as error:  # the bridge refusing a change must not end the connection
            return self._error(client, f"not applied: {type(error).__name__}: {str(error)[:160]}")

    def _error(self, client: _Client, reason: str) -> dict | None:
        return {"op": "error", "reason": reason} if client.errors.take(time.monotonic()) else None

    def _dispatch(self, client: _Client, frame) -> dict | None:
        if not isinstance(frame, str):
            raise ControlError("binary frames are not understood; send JSON text frames")
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError) as error:
            raise ControlError(f"not JSON: {str(error)[:80]}") from None
        if not isinstance(message, dict):
            raise ControlError(f"a message must be a JSON object, got {type(message).__name__}")
        op, path = message.get("op"), message.get("path")
        if op not in ("set", "get"):
            raise ControlError(f"unknown op {str(op)[:40]!r}; use 'set' or 'get'")
        if not isinstance(path, str):
            raise ControlError("the message needs a string 'path'")
        if op == "get":
            return {"op": "reply", "path": path, "value": self.controller.query(path)}
        value = message.get("value")
        args = [] if value is None else list(value) if isinstance(value, list) else [value]
        self.controller.apply(path, args)  # validates everything; raises before any change
        if path == "/sam/subscribe":
            if len(args) != 1:  # a host and port are for OSC feedback; here the connection is the subscriber
                raise ControlError("/sam/subscribe over WebSocket takes one value, 0 or 1, for this connection")
            if args[0] not in (0, 1):
                raise ControlError(f"/sam/subscribe must be 0 or 1, got {args[0]}")
            client.subscribed = bool(args[0])
        elif path == "/sam/status":
            return {"op": "reply", "path": path, "value": self.controller.query(path)}
        return None

    # Pushes ---------------------------------------------------------------------------------

    def _on_change(self, state: dict) -> None:
        # Called on whichever thread applied the change (ours, OSC's, the bridge's).
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = _dumps({"op": "state", "state": state})
        try:
            # The client list is read on the loop's own thread, where connections come and go.
            loop.call_soon_threadsafe(lambda: self._push(list(self._clients), text))
        except RuntimeError:
            pass  # the loop closed between the check and the call

    @staticmethod
    def _push(connections: list[ServerConnection], text: str) -> None:
        ready = [c for c in connections
                 if c.transport is not None and c.transport.get_write_buffer_size() < PUSH_BUFFER_LIMIT]
        broadcast(ready, text)

    def _meter_frame(self) -> dict:
        status = self.controller.status()
        frame = {**self.controller.meters(), "op": "meter"}
        frame["status"] = {name: status[name] for name in METER_STATUS_FIELDS if name in status}
        if isinstance(status.get("visual"), dict):  # a bridge with a video source: live, stalled, ended
            frame["status"]["visual"] = status["visual"].get("state")
        return frame

    async def _meter_loop(self) -> None:
        period = 1.0 / self.meter_hz
        next_tick = self._loop.time()
        failing = False
        while True:
            subscribers = [client.connection for client in self._clients.values() if client.subscribed]
            if subscribers:
                try:
                    self._push(subscribers, _dumps(self._meter_frame()))
                    failing = False
                except Exception as error:  # a meter read failing must not end metering for good
                    if not failing:  # say so once, not at meter rate
                        self._push(subscribers, _dumps({"op": "error", "reason": f"meters unavailable: {error}"}))
                    failing = True
            next_tick += period
            delay = next_tick - self._loop.time()
            if delay < 0:  # fell behind (a slow meter read): skip ticks rather than burst
                next_tick, delay = self._loop.time(), 0.0
            await asyncio.sleep(delay)
