"""The parameter tree behind OSC and WebSocket: one validator, one state, one set of listeners.

Both control surfaces hand every incoming message to ``Controller.apply(path, args)``.
It checks the path and every argument before anything changes, so a refused message
(``ControlError``, whose text is the reason sent back as ``/sam/error``) leaves the
stream exactly as it was. Accepted changes go to the live bridge, which applies them at
a hop boundary with a crossfade, and every listener is told the new state.

A change may carry a stream time (``at_seconds``, from an OSC bundle's time tag
translated by the caller): it is held until the stream reaches that time.

No caller ever waits here for long: the lock is held only while the state is copied and
the bridge is told (whose methods only record a request and return), and the worker's
``run_due`` skips a hop rather than wait for the lock.
"""
from __future__ import annotations

import copy
import errno
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

MAX_TEXT_CHARS = 256
MAX_GAIN_DB = 24.0
MIN_GAIN_DB = -96.0
MAX_SCHEDULED = 256


class ControlError(ValueError):
    """A message refused; the text says why and is what the sender gets back."""


@dataclass(frozen=True)
class MixSettings:
    """How target, residual and dry input make the output. Applied with a crossfade."""

    mode: str = "extract"  # extract: keep the target; remove: keep the residual
    mix: float = 1.0  # wet amount 0..1; the rest is the dry input
    target_gain_db: float = 0.0
    residual_gain_db: float = 0.0
    bypass: bool = False

    def weights(self, passing_through: bool = False) -> tuple[float, float, float]:
        """(dry, target, residual) weights of the output. No prompt or bypass: the dry input."""
        if self.bypass or passing_through:
            return 1.0, 0.0, 0.0
        if self.mode == "extract":
            return 1.0 - self.mix, self.mix * db_to_gain(self.target_gain_db), 0.0
        return 1.0 - self.mix, 0.0, self.mix * db_to_gain(self.residual_gain_db)

    def safe_gain(self) -> float:
        """The output's gain on the dry input when the model has nothing to say (a missed hop)."""
        dry, target, residual = self.weights()
        return dry + target + residual


def db_to_gain(db: float) -> float:
    return 0.0 if db <= MIN_GAIN_DB else 10.0 ** (db / 20.0)


class LiveTarget(Protocol):
    """What the controller drives: the live bridge (``plugin_host.bridge.LiveBridge``)."""

    max_steps: int

    def set_mix(self, settings: MixSettings) -> None: ...

    def set_text(self, text: str) -> None: ...

    def set_steps(self, steps: int) -> None: ...

    def add_span(self, start: float, stop: float, positive: bool) -> None: ...

    def set_capture(self, holding: bool) -> tuple[float, float] | None:
        """Returns the captured span (stream seconds) on a release that gave an example."""


    def set_visual_box(self, box: tuple[float, float, float, float]) -> None: ...

    def clear_prompts(self) -> None: ...

    def stream_seconds(self) -> float: ...

    def status(self) -> dict: ...

    def meters(self) -> dict: ...


@dataclass(frozen=True)
class Parameter:
    path: str
    types: str  # OSC type letters of the arguments: "s", "f f", "i", ""
    doc: str
    query: bool = False  # answered, changes nothing
    optional_from: int | None = None  # the arguments from this index on may be left out, all together


TREE: tuple[Parameter, ...] = (
    Parameter("/sam/prompt/text", "s", 'text prompt; "" clears it'),
    Parameter("/sam/prompt/span", "f f", "positive span in stream seconds; negative numbers count back from now"),
    Parameter("/sam/prompt/span/neg", "f f", "negative span (where the target is absent)"),
    Parameter("/sam/prompt/capture", "i", "1: the target sounds from now on; 0: it stopped"),
    Parameter("/sam/prompt/visual/box", "f f f f", "x, y, w, h (0..1 of the frame) on the video source"),
    Parameter("/sam/prompt/clear", "", "drop every prompt"),
    Parameter("/sam/mode", "s", "extract or remove"),
    Parameter("/sam/mix", "f", "0..1 wet amount"),
    Parameter("/sam/target/gain", "f", f"target gain in dB ({MIN_GAIN_DB:g}..{MAX_GAIN_DB:g})"),
    Parameter("/sam/residual/gain", "f", f"residual gain in dB ({MIN_GAIN_DB:g}..{MAX_GAIN_DB:g})"),
    Parameter("/sam/bypass", "i", "1 bypasses with a crossfade"),
    Parameter("/sam/steps", "i", "flow-matching steps per hop"),
    Parameter("/sam/status", "", "latency_ms, xruns, misses, rtf, prompt, confidence", query=True),
    Parameter("/sam/subscribe", "i s i", "1: meters at 10 Hz or more to the sender, or to host, port if given; "
              "0: stop", optional_from=1),
)
PARAMETERS = {parameter.path: parameter for parameter in TREE}


def _number(value, path: str, index: int) -> float:
    # bool is an int in Python; a JSON true is not a number here.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{path}: argument {index + 1} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ControlError(f"{path}: argument {index + 1} must be finite, got {value}")
    return value


def _whole(value, path: str, index: int) -> int:
    number = _number(value, path, index)
    if number != int(number):
        raise ControlError(f"{path}: argument {index + 1} must be a whole number, got {number:g}")
    return int(number)


def check_arguments(path: str, args: Sequence) -> tuple:
    """The message's arguments converted to their types, or ControlError naming what is wrong."""
    if not isinstance(path, str):
        raise ControlError(f"the path must be a string, got {type(path).__name__}")
    parameter = PARAMETERS.get(path)
    if parameter is None:
        raise ControlError(f"unknown path {path[:80]!r}")
    types = parameter.types.split()
    if len(args) != len(types) and len(args) != parameter.optional_from:
        counts = f"{parameter.optional_from} or {len(types)}" if parameter.optional_from is not None else len(types)
        raise ControlError(f"{path} takes {counts} argument(s) ({parameter.types or 'none'}), got {len(args)}")
    types = types[:len(args)]
    converted = []
    for index, (kind, value) in enumerate(zip(types, args, strict=True)):
        if kind == "s":
            if not isinstance(value, str):
                raise ControlError(f"{path}: argument {index + 1} must be a string, got {type(value).__name__}")
            if len(value) > MAX_TEXT_CHARS:
                raise ControlError(f"{path}: text longer than {MAX_TEXT_CHARS} characters ({len(value)})")
            converted.append(value)
        elif kind == "f":
            converted.append(_number(value, path, index))
        else:
            converted.append(_whole(value, path, index))
    if path == "/sam/subscribe" and len(converted) == 3:
        check_port(converted[2], f"{path}: the port")
    return tuple(converted)


@dataclass
class ControlState:
    text: str = ""
    mix: MixSettings = field(default_factory=MixSettings)
    steps: int = 1
    capture: bool = False
    spans: list[tuple[float, float, bool]] = field(default_factory=list)
    visual_box: tuple[float, float, float, float] | None = None

    def as_dict(self) -> dict:
        return {
            "/sam/prompt/text": self.text,
            "/sam/prompt/spans": [{"start": a, "stop": b, "positive": p} for a, b, p in self.spans],
            "/sam/prompt/capture": int(self.capture),
            "/sam/prompt/visual/box": list(self.visual_box) if self.visual_box else None,
            "/sam/mode": self.mix.mode,
            "/sam/mix": self.mix.mix,
            "/sam/target/gain": self.mix.target_gain_db,
            "/sam/residual/gain": self.mix.residual_gain_db,
            "/sam/bypass": int(self.mix.bypass),
            "/sam/steps": self.steps,
        }


class Controller:
    """Validates and applies control messages from any thread; tells listeners of changes."""

    def __init__(self, target: LiveTarget):
        self.target = target
        self._state = ControlState()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict], None]] = []
        self._scheduled: list[tuple[float, str, tuple]] = []

    def tree(self) -> dict:
        return {p.path: {"args": p.types, "doc": p.doc, "query": p.query} for p in TREE}

    def state(self) -> dict:
        now = self.target.stream_seconds()
        with self._lock:
            snapshot = self._state.as_dict()
        # A negative span the stream has passed no longer steers anything: it is not listed.
        snapshot["/sam/prompt/spans"] = [span for span in snapshot["/sam/prompt/spans"]
                                         if span["positive"] or span["stop"] > now]
        return snapshot

    def status(self) -> dict:
        return self.target.status()

    def meters(self) -> dict:
        return self.target.meters()

    def video_picture(self) -> bytes | None:
        """The latest video frame (JPEG) where the target has a video source, else None."""
        picture = getattr(self.target, "video_picture", None)
        return picture() if picture is not None else None

    def add_listener(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """``listener(state)`` after every accepted change; returns the function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return remove

    def query(self, path: str) -> dict:
        if path == "/sam/status":
            return self.status()
        if path in ("/sam/state", "/sam"):
            return self.state()
        if path == "/sam/tree":
            return self.tree()
        raise ControlError(f"nothing to get at {str(path)[:80]!r} (try /sam/status, /sam/state, /sam/tree)")

    def apply(self, path: str, args: Sequence = (), at_seconds: float | None = None) -> None:
        """Validate, then apply now or at stream time ``at_seconds``. ControlError changes nothing."""
        values = check_arguments(path, args)
        parameter = PARAMETERS[path]
        if parameter.query or path == "/sam/subscribe":
            return  # answered by the surface itself (status reply, meter subscription)
        self._validate(path, values)
        if at_seconds is not None and at_seconds > self.target.stream_seconds():
            with self._lock:
                if len(self._scheduled) >= MAX_SCHEDULED:
                    raise ControlError(f"too many scheduled changes (at most {MAX_SCHEDULED})")
                self._scheduled.append((at_seconds, path, values))
                self._scheduled.sort(key=lambda entry: entry[0])
            return
        self._commit(path, values)

    def run_due(self) -> int:
        """Apply every scheduled change whose time has come; the bridge calls this each hop batch."""
        if not self._scheduled:
            return 0
        now = self.target.stream_seconds()
        due = []
        # On the worker: a control thread holding the lock makes this hop skip, not wait.
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            while self._scheduled and self._scheduled[0][0] <= now:
                due.append(self._scheduled.pop(0))
        finally:
            self._lock.release()
        for _, path, values in due:
            self._commit(path, values)
        return len(due)

    def _validate(self, path: str, values: tuple) -> None:
        if path == "/sam/mode" and values[0] not in ("extract", "remove"):
            raise ControlError(f"/sam/mode must be 'extract' or 'remove', got {values[0][:40]!r}")
        if path == "/sam/mix" and not 0.0 <= values[0] <= 1.0:
            raise ControlError(f"/sam/mix must be within 0..1, got {values[0]:g}")
        if path in ("/sam/target/gain", "/sam/residual/gain") and not MIN_GAIN_DB <= values[0] <= MAX_GAIN_DB:
            raise ControlError(f"{path} must be within {MIN_GAIN_DB:g}..{MAX_GAIN_DB:g} dB, got {values[0]:g}")
        if path in ("/sam/bypass", "/sam/prompt/capture") and values[0] not in (0, 1):
            raise ControlError(f"{path} must be 0 or 1, got {values[0]}")
        if path == "/sam/steps" and not 1 <= values[0] <= self.target.max_steps:
            raise ControlError(f"/sam/steps must be within 1..{self.target.max_steps}, got {values[0]}")
        if path in ("/sam/prompt/span", "/sam/prompt/span/neg"):
            start, stop = self._absolute_span(*values)
            if not stop > start:
                raise ControlError(f"{path}: the span must end after it starts, got {values[0]:g} to {values[1]:g}")
            check_span = getattr(self.target, "check_span", None)
            if check_span is not None:
                try:
                    check_span(start, stop, path == "/sam/prompt/span")
                except ControlError as error:
                    raise ControlError(f"{path}: {error}") from None
        if path == "/sam/prompt/visual/box":
            w, h = values[2:]
            if not (w > 0 and h > 0):
                raise ControlError(f"{path}: width and height must be positive, got {w:g} x {h:g}")
            x, y = values[:2]
            if min(x + w, 1.0) <= max(x, 0.0) or min(y + h, 1.0) <= max(y, 0.0):
                raise ControlError(f"{path}: the box lies outside the frame (0..1 on both axes)")

    def _absolute_span(self, start: float, stop: float) -> tuple[float, float]:
        now = self.target.stream_seconds()
        return (now + start if start < 0 else start), (now + stop if stop < 0 or (start < 0 and stop == 0) else stop)

    def _commit(self, path: str, values: tuple) -> None:
        target = self.target
        with self._lock:
            # Work on a copy: if the bridge refuses the change, the state stays what it had.
            state = copy.deepcopy(self._state)
            if path == "/sam/prompt/text":
                state.text = values[0]
                target.set_text(values[0])
            elif path in ("/sam/prompt/span", "/sam/prompt/span/neg"):
                start, stop = self._absolute_span(*values)
                positive = path == "/sam/prompt/span"
                state.spans = listed_spans(state.spans, (start, stop, positive), target.stream_seconds())
                target.add_span(start, stop, positive)
            elif path == "/sam/prompt/capture":
                state.capture = bool(values[0])
                captured = target.set_capture(state.capture)
                if captured is not None:
                    state.spans = listed_spans(state.spans, (*captured, True), target.stream_seconds())
            elif path == "/sam/prompt/visual/box":
                x, y, w, h = values
                # A box reaching outside the frame is clipped to it.
                x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
                x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
                state.visual_box = (x0, y0, x1 - x0, y1 - y0)
                target.set_visual_box(state.visual_box)
            elif path == "/sam/prompt/clear":
                state.text, state.spans, state.capture, state.visual_box = "", [], False, None
                target.clear_prompts()
            elif path == "/sam/steps":
                state.steps = values[0]
                target.set_steps(values[0])
            else:
                changes = {
                    "/sam/mode": {"mode": values[0]},
                    "/sam/mix": {"mix": values[0]},
                    "/sam/target/gain": {"target_gain_db": values[0]},
                    "/sam/residual/gain": {"residual_gain_db": values[0]},
                    "/sam/bypass": {"bypass": bool(values[0])},
                }[path]
                state.mix = replace(state.mix, **changes)
                target.set_mix(state.mix)
            self._state = state
            snapshot = state.as_dict()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(snapshot)


def listed_spans(spans: list, new: tuple[float, float, bool], now: float) -> list:
    """The spans in force once ``new`` is added: a positive span replaces the last (its example is
    the prompt's), negative spans stay until the stream has passed them."""
    kept = [span for span in spans if (span[2] and not new[2]) or (not span[2] and span[1] > now)]
    return [*kept, new]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_bind(host: str, token: str | None) -> None:
    """Loopback is open to local clients; any other address requires a token."""
    if host not in LOOPBACK_HOSTS and not token:
        raise ControlError(f"binding to {host} exposes the controls to the network: give --token")


def check_port(port: int, what: str) -> None:
    """A UDP or TCP port someone asked for by number: 1..65535 (0, "any free port", is the caller's call)."""
    if not 1 <= port <= 65535:
        raise ControlError(f"{what} must be within 1..65535, got {port}")


def listen_error(surface: str, host: str, port: int, error: BaseException) -> OSError:
    """One line naming the surface, address and port a server could not listen on."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        reason = "the port is already in use (another samstream serve, or another program, holds it)"
    else:
        reason = str(error)
    return OSError(f"cannot listen for {surface} on {host} port {port}: {reason}")


def token_matches(expected: str | None, given) -> bool:
    """Constant-time token check; with no token configured everything is allowed."""
    import hmac
    if not expected:
        return True
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


class TokenBucket:
    """``rate`` messages a second on average, bursts of up to ``burst`` (default: ``rate``)."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0):
        self.rate = float(rate)
        self.burst = float(rate if burst is None else burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``now`` on a monotonic clock, in seconds."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        allowed = tokens >= 1.0
        self.tokens = tokens - 1.0 if allowed else tokens
        return allowed

    def is_full(self, now: float) -> bool:
        """Refilled by ``now``: a bucket in this state is no different from a new one."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst
