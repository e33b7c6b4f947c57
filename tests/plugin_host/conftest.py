"""Shared fixtures for the control-surface tests.

``controller`` is a Controller over ``RecordingTarget``, which stands in for the live
bridge in the protocol tests of the OSC and WebSocket surfaces: they check what reaches
the bridge call by call, which a running model cannot show. The surfaces also run against
the real bridge: `serve` on a JACK dummy server in ``test_jack.py`` (OSC, WebSocket, soak)
and the control page over the bundled model in ``test_web_page.py``.
"""
from __future__ import annotations

import socket

import pytest

from samstream.plugin_host.control import Controller, MixSettings


class RecordingTarget:
    """Stands in for the live bridge: records what the controller asked of it."""

    max_steps = 2

    def __init__(self):
        self.calls: list[tuple] = []
        self.seconds = 0.0

    def set_mix(self, settings: MixSettings) -> None:
        self.calls.append(("mix", settings))

    def set_text(self, text: str) -> None:
        self.calls.append(("text", text))

    def set_steps(self, steps: int) -> None:
        self.calls.append(("steps", steps))

    def add_span(self, start: float, stop: float, positive: bool) -> None:
        self.calls.append(("span", start, stop, positive))

    def set_capture(self, holding: bool) -> None:
        self.calls.append(("capture", holding))

    def set_visual_box(self, box) -> None:
        self.calls.append(("box", box))

    def clear_prompts(self) -> None:
        self.calls.append(("clear",))

    def stream_seconds(self) -> float:
        return self.seconds

    def status(self) -> dict:
        return {"latency_ms": 21.3, "latency_samples": 1024, "xruns": 0, "misses": 0, "rtf": 0.1,
                "prompt": "", "confidence": None, "running": True}

    def meters(self) -> dict:
        return {"target": -20.0, "residual": -30.0, "confidence": None}


@pytest.fixture
def recording_target() -> RecordingTarget:
    return RecordingTarget()


@pytest.fixture
def controller(recording_target) -> Controller:
    return Controller(recording_target)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
