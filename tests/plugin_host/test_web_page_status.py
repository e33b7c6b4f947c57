"""What the control page tells a user about the stream, in headless Chromium: the miss rate and
its warning, an unknown confidence, errors that clear, and no frame requests without video."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from samstream.plugin_host.control import Controller
from samstream.plugin_host.ws_server import WebSocketServer
from tests.plugin_host.conftest import RecordingTarget
from tests.plugin_host.test_web_page import (  # noqa: F401 (browser is a fixture)
    CHROMEDRIVER,
    CHROMIUM,
    browser,
    text_of,
    until,
    wait_text,
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
By = webdriver.common.by.By

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]


class BridgeLikeTarget(RecordingTarget):
    """The recording stand-in with the fields the bridge's status has: a miss rate, the video
    state of a bridge without a source, and a confidence; every frame request is counted."""

    def __init__(self):
        super().__init__()
        self.misses_per_minute = 0.0
        self.confidence = None
        self.frame_requests = 0

    def status(self) -> dict:
        return {**super().status(), "misses_per_minute": self.misses_per_minute, "confidence": self.confidence,
                "visual": {"source": None, "state": "no video source", "box": None}}

    def meters(self) -> dict:
        return {**super().meters(), "confidence": self.confidence}

    def video_picture(self) -> bytes | None:
        self.frame_requests += 1
        return None


@pytest.fixture
def target():
    return BridgeLikeTarget()


@pytest.fixture
def page(browser, target):  # noqa: F811
    with WebSocketServer(Controller(target), port=0) as server:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait_text(browser, "connection", "connected")
        yield browser


def test_the_miss_rate_is_shown_and_warned_of_while_above_zero(page, target):
    wait_text(page, "miss-rate", "0.0")
    warning = page.find_element(By.ID, "miss-warning")
    assert not warning.is_displayed()
    target.misses_per_minute = 2.5
    wait_text(page, "miss-rate", "2.5")
    until(page, warning.is_displayed, "no warning at 2.5 misses a minute")
    assert "2.5 a minute" in warning.text
    target.misses_per_minute = 0.0
    until(page, lambda: not warning.is_displayed(), "the warning stayed after the misses stopped")


def test_an_unknown_confidence_reads_unknown(page, target):
    wait_text(page, "confidence", "unknown")
    target.confidence = 0.5
    wait_text(page, "confidence", "0.50")
    target.confidence = None  # silence, a new prompt: not known again
    wait_text(page, "confidence", "unknown")
    assert "width: 0%" in page.find_element(By.ID, "meter-confidence").get_attribute("style")


def test_without_a_video_source_no_frame_is_requested(page, target):
    state = page.find_element(By.ID, "video-state")  # in the hidden panel: its text is not "displayed"
    until(page, lambda: state.get_attribute("textContent") == "no video source", "the status never arrived")
    time.sleep(2.5)  # the old page asked at once and every 2 s after
    assert target.frame_requests == 0
    assert not page.find_element(By.ID, "video-panel").is_displayed()


def test_the_error_line_clears_after_an_accepted_change_and_by_itself(page, target):
    send = 'window.samstream.send({op: "set", path: "/sam/mix", value: arguments[0]})'
    page.execute_script(send, "loud")
    until(page, lambda: "must be a number" in text_of(page, "error"), "the refusal was never shown")
    page.execute_script(send, 0.5)
    until(page, lambda: text_of(page, "error") == "", "the error stayed after an accepted change")
    page.execute_script(send, 2)
    until(page, lambda: "within 0..1" in text_of(page, "error"), "the second refusal was never shown")
    shown_at = time.monotonic()
    until(page, lambda: text_of(page, "error") == "", "the error never cleared by itself")
    assert 4.0 < time.monotonic() - shown_at < 15.0  # long enough to read, gone well before the next one
