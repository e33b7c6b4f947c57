"""OSC over UDP: a thin surface over ``Controller`` (DESIGN.md, "Control contract").

Every message goes to ``Controller.apply``; whatever it refuses, and anything that is not
well-formed OSC, is answered to the sender (and the reply address, see ``osc_feedback``)
with ``/sam/error s <reason>`` and changes nothing. Datagrams are read and parsed here
rather than by python-osc's server, whose bundle handling sleeps in the server thread
until a time tag and whose logging writes a line per bad datagram.

Wire formats beyond the contract table:

- ``/sam/status`` and ``/sam/state`` are answered with a message of the same address whose
  arguments alternate name (s) and value: numbers as i or f, strings as s, None as the
  string "none", lists and dicts as a JSON string. ``/sam/tree`` answers ``/sam/tree s <json>``.
- Subscribers and the reply address get one message per state path (``/sam/mode s extract``,
  ``/sam/mix f 1.0``, ``/sam/prompt/visual/box f f f f``; no arguments when unset;
  ``/sam/prompt/spans s <json>``),
  first the full state, then the paths that changed, plus meters at ``meter_hz``
  (``/sam/confidence`` without arguments while the confidence is not known).
- With a token, ``/sam/auth s TOKEN`` authorises the sender's IP address and is answered
  ``/sam/auth i 1``.

A bundle's time tag is wall-clock time, translated to stream time; the controller holds
changes for the future and the bridge applies them with ``Controller.run_due()``. A bundle
is applied element by element: a refused element is answered with an error and the other
elements still apply. A nested bundle takes effect no earlier than the bundle around it.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types

from .control import ControlError, Controller, TokenBucket, check_bind, listen_error, token_matches
from .osc_feedback import Destinations, build, check_destination, meter_messages, pairs_message, resolve, state_message

MAX_DATAGRAM = 8192
MAX_SUBSCRIBERS = 32
MAX_BUNDLE_DEPTH = 8
MESSAGE_RATE, MESSAGE_BURST = 500.0, 1000.0  # per sender IP
ERROR_RATE, ERROR_BURST = 20.0, 20.0  # error replies per sender address
AUTH_RATE, AUTH_BURST = 1.0, 5.0  # token guesses per sender IP
UNAUTHORIZED = "unauthorized: send /sam/auth with the token first"
IMMEDIATELY = osc_types.IMMEDIATELY  # what python-osc's get_date returns for time tag 1

log = logging.getLogger(__name__)

# Argument sizes by type tag; python-osc tolerates short floats and trailing bytes, so a
# truncated message could otherwise decode to a different, valid value.
_FIXED_SIZES = {"i": 4, "f": 4, "c": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}


class _Limiter:
    """Token buckets by key. Used from the receive thread only, so no lock."""

    def __init__(self, rate: float, burst: float, cap: int = 4096):
        self.rate, self.burst, self.cap = rate, burst, cap
        self._buckets: dict = {}

    def take(self, key, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.cap:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is indistinguishable from a new one: forgetting it is free.
        # Spoofed source addresses could still fill the table, so past that it starts over.
        full = [key for key, bucket in self._buckets.items() if bucket.is_full(now)]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.cap:
            self._buckets.clear()


def check_layout(dgram: bytes) -> None:
    """Raise ValueError unless the message's bytes are exactly what its type tags say."""
    if len(dgram) % 4:
        raise ValueError(f"length {len(dgram)} is not a multiple of 4")
    _, index = osc_types.get_string(dgram, 0)
    if index == len(dgram):
        return  # address only: old-style message without type tags
    tags, index = osc_types.get_string(dgram, index)
    for tag in tags[1:]:
        if tag in _FIXED_SIZES:
            index += _FIXED_SIZES[tag]
        elif tag in "sS":
            _, index = osc_types.get_string(dgram, index)
        elif tag == "b":
            size, index = osc_types.get_int(dgram, index)
            if size < 0:
                raise ValueError("negative blob size")
            index += size + (-size) % 4
        if index > len(dgram):
            raise ValueError("arguments end before their type tags do")
    if index != len(dgram):
        raise ValueError(f"{len(dgram) - index} bytes after the last argument")


class OscServer:
    """UDP OSC server for one Controller. ``start()`` binds and runs two daemon threads: one
    receives and answers, one pushes state changes and meters to subscribers and to
    ``reply_to`` (host, port), which also gets every reply and error.

    Counters: ``received`` datagrams, ``refused`` messages and datagrams answered with an error.
    """

    def __init__(self, controller: Controller, host: str = "127.0.0.1", port: int = 9000,
                 token: str | None = None, meter_hz: float = 20.0, reply_to: tuple[str, int] | None = None):
        check_bind(host, token)
        if reply_to is not None:
            check_destination(reply_to[0], token)
        if not 10.0 <= meter_hz <= 200.0:
            raise ValueError(f"meter_hz must be within 10..200, got {meter_hz}")
        self.controller, self.host, self.token, self.meter_hz = controller, host, token, meter_hz
        self.reply_to = reply_to
        self._port = port
        self.received = 0
        self.refused = 0
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()  # the last pushed state
        self._destinations = Destinations(MAX_SUBSCRIBERS)
        self._pushed: dict = {}
        self._latest: dict | None = None
        self._wake = threading.Event()  # a change to push, or stop()
        self._remove_listener = None
        self._authorised: set[str] = set()
        self._messages = _Limiter(MESSAGE_RATE, MESSAGE_BURST)
        self._errors = _Limiter(ERROR_RATE, ERROR_BURST)
        self._rate_notices = _Limiter(1.0, 1.0)
        self._auth_attempts = _Limiter(AUTH_RATE, AUTH_BURST)
        self._log_stamp, self._log_refused = time.monotonic(), 0

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock is not None else self._port

    def start(self) -> OscServer:
        if self._sock is not None or self._stopped:
            raise RuntimeError("an OscServer starts once")
        infos = socket.getaddrinfo(self.host, self._port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
            if self.reply_to is not None:  # a host name is looked up once, here
                self._destinations.reply_address = resolve(*self.reply_to, family, numeric=False)
        except OSError as error:
            sock.close()
            raise listen_error("OSC", self.host, self._port, error) from error
        except ControlError:
            sock.close()
            raise
        sock.settimeout(0.1)  # so the receive thread notices stop()
        self._sock = sock
        self._pushed = self.controller.state()
        if self._destinations.reply_address is not None:
            self._send_state(self._destinations.reply_address, self._pushed)
        self._remove_listener = self.controller.add_listener(self._on_change)
        for target, name in ((self._receive_loop, "osc-receive"), (self._push_loop, "osc-push")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        if self._remove_listener is not None:
            self._remove_listener()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- receiving ---------------------------------------------------------------------

    def _receive_loop(self) -> None:
        sock = self._sock
        while not self._stopping.is_set():
            try:
                data, sender = sock.recvfrom(65536)
            except OSError:
                continue  # the 0.1 s timeout, or an ICMP error reported on the socket
            self.received += 1
            try:
                self._handle_datagram(data, sender)
            except Exception as error:  # one datagram must never end the loop
                self._refuse(sender, f"internal error handling the message: {type(error).__name__}")

    def _admit(self, sender) -> bool:
        now = time.monotonic()
        if self._messages.take(sender[0], now):
            return True
        self._count_refusal()
        if self._rate_notices.take(sender[0], now):
            self._send_error(sender, f"rate limited: at most {MESSAGE_RATE:g} messages/s per sender")
        return False

    def _handle_datagram(self, data: bytes, sender) -> None:
        if not self._admit(sender):
            return
        if len(data) > MAX_DATAGRAM:
            self._refuse(sender, f"datagram too large ({len(data)} bytes, at most {MAX_DATAGRAM})")
        elif OscBundle.dgram_is_bundle(data):
            self._handle_bundle(data, sender, IMMEDIATELY, 0)
        else:
            self._handle_element(data, sender, IMMEDIATELY)

    def _handle_bundle(self, data: bytes, sender, outer_tag: float, depth: int) -> None:
        if depth >= MAX_BUNDLE_DEPTH:
            self._refuse(sender, f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
            return
        try:
            tag, index = osc_types.get_date(data, len(b"#bundle\x00"))
        except Exception:
            self._refuse(sender, "malformed OSC bundle: no time tag")
            return
        tag = max(tag, outer_tag)
        while index < len(data):
            try:
                size, index = osc_types.get_int(data, index)
            except Exception:
                size = -1
            if size <= 0 or size % 4 or index + size > len(data):
                self._refuse(sender, "malformed OSC bundle: bad element size")
                return  # without sizes the rest cannot be found
            element, index = data[index:index + size], index + size
            if OscBundle.dgram_is_bundle(element):
                self._handle_bundle(element, sender, tag, depth + 1)
            elif self._admit(sender):
                self._handle_element(element, sender, tag)

    def _handle_element(self, data: bytes, sender, tag: float) -> None:
        try:
            check_layout(data)
            message = OscMessage(data)
        except Exception as error:
            self._refuse(sender, f"malformed OSC message: {str(error)[:120] or type(error).__name__}")
            return
        try:
            self._handle_message(message.address, list(message.params), sender, tag)
        except Exception as error:  # the rest of its bundle still applies
            self._refuse(sender, f"internal error handling {message.address[:80]}: {type(error).__name__}")

    def _handle_message(self, path: str, args: list, sender, tag: float) -> None:
        if path == "/sam/auth":
            self._auth(args, sender)
            return
        if self.token and sender[0] not in self._authorised:
            self._refuse(sender, UNAUTHORIZED)
            return
        if path in ("/sam/state", "/sam/tree"):
            if args:
                self._refuse(sender, f"{path} takes no arguments, got {len(args)}")
            elif path == "/sam/state":
                self._reply(sender, pairs_message(path, self.controller.state()))
            else:
                self._reply(sender, build(path, [("s", json.dumps(self.controller.tree()))]))
            return
        try:
            self.controller.apply(path, args, at_seconds=self._stream_time(tag))
        except ControlError as error:
            self._refuse(sender, str(error))
            return
        if path == "/sam/status":
            self._reply(sender, pairs_message(path, self.controller.status()))
        elif path == "/sam/subscribe":
            self._subscribe(sender, args)

    def _stream_time(self, tag: float) -> float | None:
        """Stream seconds of a wall-clock time tag; None (now) for "immediately" or the past."""
        if tag == IMMEDIATELY:
            return None
        ahead = tag - time.time()
        return self.controller.target.stream_seconds() + ahead if ahead > 0 else None

    def _auth(self, args: list, sender) -> None:
        if self.token and not self._auth_attempts.take(sender[0], time.monotonic()):
            self._refuse(sender, "unauthorized: too many attempts, wait a second")
        elif len(args) != 1 or not isinstance(args[0], str):
            self._refuse(sender, "/sam/auth takes one string: the token")
        elif not token_matches(self.token, args[0]):
            self._refuse(sender, "unauthorized: wrong token")
        else:
            if self.token:
                self._authorised.add(sender[0])
            self._reply(sender, build("/sam/auth", [("i", 1)]))

    # -- replies and pushes ------------------------------------------------------------

    def _send(self, address, data: bytes) -> None:
        try:
            self._sock.sendto(data, address)
        except OSError:
            pass  # a vanished client is not the server's problem

    def _reply(self, sender, data: bytes) -> None:
        for address in self._destinations.replies(sender):
            self._send(address, data)

    def _send_error(self, sender, reason: str) -> None:
        error, now = build("/sam/error", [("s", reason[:300])]), time.monotonic()
        for address in self._destinations.replies(sender):
            if self._errors.take(address, now):  # limited per destination: the reply address hears every sender
                self._send(address, error)

    def _refuse(self, sender, reason: str) -> None:
        self._count_refusal()
        self._send_error(sender, reason)

    def _count_refusal(self) -> None:
        # A count every ten seconds at most: a flood of garbage must not become a flood of log lines.
        self.refused += 1
        self._log_refused += 1
        now = time.monotonic()
        if now - self._log_stamp >= 10.0:
            log.warning("OSC: refused %d messages in the last %.0f s", self._log_refused, now - self._log_stamp)
            self._log_stamp, self._log_refused = now, 0

    def _subscribe(self, sender, args: list) -> None:
        """``/sam/subscribe i``: the sender; ``/sam/subscribe i s i``: host and port (checked by the controller)."""
        on = bool(args[0])
        if len(args) == 1:
            address = sender
        else:
            try:
                check_destination(args[1], self.token)
                address = resolve(args[1], int(args[2]), self._sock.family, numeric=True)
            except ControlError as error:
                self._refuse(sender, f"/sam/subscribe: {error}")
                return
        if not self._destinations.subscribe(address, on):
            self._refuse(sender, f"too many subscribers (at most {MAX_SUBSCRIBERS})")
        elif on:
            self._send_state(address, self.controller.state())

    def _send_state(self, address, state: dict) -> None:
        for path, value in state.items():
            self._send(address, state_message(path, value))

    def _on_change(self, state: dict) -> None:
        # The controller calls this on whichever thread committed the change, the bridge's
        # run_due() included: hand the state to the push thread instead of sending from here.
        with self._lock:
            self._latest = state
        self._wake.set()

    def _push_changes(self) -> None:
        with self._lock:
            state, self._latest = self._latest, None
            if state is None:
                return
            changed = [path for path, value in state.items() if self._pushed.get(path) != value]
            self._pushed = dict(state)
        subscribers = self._destinations.feedback()
        messages = [state_message(path, state[path]) for path in changed]
        for subscriber in subscribers:
            for message in messages:
                self._send(subscriber, message)

    def _push_loop(self) -> None:
        """State changes as they come, meters every 1/meter_hz seconds."""
        interval = 1.0 / self.meter_hz
        deadline = time.monotonic() + interval
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            if self._stopping.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                self._push_changes()
            now = time.monotonic()
            if now < deadline:
                continue
            deadline = deadline + interval if deadline + interval > now else now + interval
            subscribers = self._destinations.feedback()
            if not subscribers:
                continue
            try:
                messages = meter_messages(self.controller.meters())
            except Exception:
                continue  # a meter that cannot be read this tick is read the next
            for subscriber in subscribers:
                for message in messages:
                    self._send(subscriber, message)
