"""The control page's video picture: the latest frame over HTTP, and a box drawn on it in a real browser."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from samstream.models.config import ModelConfig
from samstream.plugin_host.control import Controller
from samstream.plugin_host.video import write_video
from samstream.plugin_host.video_live import VideoFeed
from samstream.plugin_host.ws_server import WebSocketServer
from tests.plugin_host.conftest import RecordingTarget
from tests.plugin_host.test_web_page import CHROMEDRIVER, CHROMIUM, browser, until  # noqa: F401 (a fixture)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
ActionChains, By = webdriver.ActionChains, webdriver.common.by.By


class TargetWithVideo(RecordingTarget):
    """The recording stand-in for the bridge, with a real video source behind its picture."""

    def __init__(self, feed: VideoFeed):
        super().__init__()
        self.feed = feed

    def video_picture(self) -> bytes | None:
        return self.feed.picture_jpeg()

    def status(self) -> dict:
        return {**super().status(), "visual": {"state": f"video {self.feed.state}", "box": None}}


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    frames = np.zeros((10, 180, 320, 3), np.uint8)
    frames[:, 40:140, 60:260] = (200, 80, 40)
    path = tmp_path_factory.mktemp("page-video") / "scene.mp4"
    write_video(path, frames, 25.0)
    source = VideoFeed(str(path), ModelConfig(), lambda: 0.2, threaded=False)
    source.latest_at(0.2, np.zeros(ModelConfig().prompt.visual_dim, np.float32))  # decodes up to 0.2 s
    yield source
    source.stop()


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_latest_frame_is_served_as_a_jpeg_and_its_absence_as_404(feed, controller):
    with WebSocketServer(Controller(TargetWithVideo(feed)), port=0) as server:
        status, kind, body = fetch(f"http://127.0.0.1:{server.port}/video/frame.jpg")
    assert status == 200 and kind == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    assert feed.picture_jpeg() is feed.picture_jpeg()  # encoded once per frame
    with WebSocketServer(controller, port=0) as server:  # the plain stand-in has no video source
        status, _, body = fetch(f"http://127.0.0.1:{server.port}/video/frame.jpg")
    assert status == 404 and b"no video source" in body


@pytest.mark.timeout(180)
@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_a_box_dragged_on_the_picture_becomes_the_visual_box(browser, feed):  # noqa: F811
    controller = Controller(TargetWithVideo(feed))
    with WebSocketServer(controller, port=0) as server:
        browser.get(f"http://127.0.0.1:{server.port}/")
        panel = browser.find_element(By.ID, "video-panel")
        until(browser, panel.is_displayed, "the video panel never showed")
        state = browser.find_element(By.ID, "video-state")
        until(browser, lambda: state.text == "video playing", f"the source's state never showed ({state.text!r})")
        canvas = browser.find_element(By.ID, "video-box")
        until(browser, lambda: canvas.size["width"] > 100, "the picture never got its size")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        width, height = canvas.size["width"], canvas.size["height"]
        # Drag from a quarter of the way in to three quarters: offsets are from the centre.
        (ActionChains(browser).move_to_element_with_offset(canvas, -width // 4, -height // 4).click_and_hold()
         .move_by_offset(width // 4, height // 4).move_by_offset(width // 4, height // 4).release().perform())
        until(browser, lambda: controller.state()["/sam/prompt/visual/box"] is not None, "no box arrived")
        x, y, w, h = controller.state()["/sam/prompt/visual/box"]
        assert (x, y, w, h) == pytest.approx((0.25, 0.25, 0.5, 0.5), abs=0.03)
        browser.find_element(By.ID, "video-box").click()  # a click alone is not a box
        assert controller.state()["/sam/prompt/visual/box"] == pytest.approx([x, y, w, h])
