"""The live bridge's video source: a video decoded off the audio thread, its region's features fed per hop.

``VideoFeed`` decodes a file in step with the stream's clock (a little ahead of it), or a
V4L2 camera as its frames arrive, on its own thread, and keeps the features of the last
frames in a small ring: (time shown, row). The frame's region is the box sent over
``/sam/prompt/visual/box``; a new box is taken by the feed thread before its next frame.

``LiveVisual`` runs on the bridge's worker before every hop: it picks the row of the
latest frame shown at or before the time the hop's model frame looks at (the rule the
offline path follows, ``kernels.visual.hold_features_at``) and writes it into the row
every separator reads. When the video stops delivering (the file ended, the camera
stalled, decoding failed) the row fades to zeros over the prompt crossfade, the visual
prompt drops out of the prompt, the other prompts carry on, and ``/sam/status`` says so;
when frames come back, it fades back in.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from samstream.models.config import ModelConfig
from samstream.models.visual import HOLD_SECONDS, UNTRAINED_NOTE, ImageEncoder, RegionFeatures, clip_box

from .video import VideoError, decoded_frames, jpeg_of, open_video

RING_FRAMES = 64
LEAD_SECONDS = 0.08  # how far a file is decoded ahead of the stream: a new box lands within this
STALL_SECONDS = HOLD_SECONDS  # no frame this much older than the hop's time: the video counts as stalled


class VideoFeed:
    """Decodes ``path`` (a file, or /dev/videoN) into feature rows, on its own thread or on demand."""

    def __init__(self, path: str, config: ModelConfig, clock: Callable[[], float], threaded: bool = True,
                 encoder: ImageEncoder | None = None):
        self.path = str(path)
        self.camera = self.path.startswith("/dev/video")
        self.clock = clock
        self.threaded = threaded
        self._container, stream, self.info = open_video(self.path)
        self._frames = decoded_frames(self._container, stream, self.info)
        height, width = self.info.analysis_size
        self.region = RegionFeatures(height, width, config, encoder=encoder)
        self.region.set_box(None)
        self._pending_box: list = []
        self.seconds = np.full(RING_FRAMES, -np.inf)
        self.rows = np.zeros((RING_FRAMES, config.prompt.visual_dim), np.float32)
        self.count = 0
        self.state = "playing"
        self.decode_ms = 0.0  # mean cost of one frame: decode and features
        self._latest_frame = None  # the decoded frame itself, for the control page's picture
        self._picture: tuple[int, bytes] | None = None  # (frame count, JPEG): encoded once per frame
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        """From any thread: the region from the next decoded frame on (None: no region)."""
        # Frames already decoded ahead keep the old box: a new box lands within LEAD_SECONDS.
        self._pending_box.append(box)

    def start(self) -> None:
        if self.threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="samstream-video", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._container.close()

    def _run(self) -> None:
        try:
            self._play()
        except Exception as error:  # a source that breaks (a camera unplugged) ends the feed, not the stream
            self.state = f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"

    def _play(self) -> None:
        while not self._stopping.is_set() and self.state == "playing":
            newest = self.seconds[(self.count - 1) % RING_FRAMES] if self.count else -np.inf
            if not self.camera and newest > self.clock() + LEAD_SECONDS:
                time.sleep(0.005)
                continue
            self._decode_one()

    def _decode_one(self) -> bool:
        """Decode the next frame into the ring; False when the video has ended or failed."""
        start = time.perf_counter()
        try:
            seconds, grey, frame = next(self._frames)
        except StopIteration:
            self.state = "ended"
            return False
        except VideoError as error:
            self.state = f"failed: {error}"
            return False
        if self.camera:
            seconds = self.clock()  # a camera shows now: its frames are placed by arrival
        while self._pending_box:
            self.region.set_box(self._pending_box.pop(0))
        slot = self.count % RING_FRAMES
        rgb = frame.to_ndarray(format="rgb24") if self.region.encoder is not None else None
        self.rows[slot] = self.region.frame(grey, seconds, rgb)
        self.seconds[slot] = seconds
        self._latest_frame = frame  # a reference: the decoder does not reuse a frame still referred to
        self.count += 1
        self.decode_ms += (1000.0 * (time.perf_counter() - start) - self.decode_ms) / min(self.count, 100)
        return True

    def picture_jpeg(self) -> bytes | None:
        """The latest decoded frame as a small JPEG (for the control page), or None before the first."""
        count, frame = self.count, self._latest_frame
        if frame is None:
            return None
        if self._picture is None or self._picture[0] != count:
            self._picture = (count, jpeg_of(frame))
        return self._picture[1]

    def latest_at(self, seconds: float, row_out: np.ndarray) -> float | None:
        """Copy the row of the latest frame shown at or before ``seconds``; its time, or None if none is there yet."""
        if not self.threaded:
            while self.state == "playing" and (not self.count or
                                               self.seconds[(self.count - 1) % RING_FRAMES] <= seconds):
                self._decode_one()
        count = self.count
        for back in range(1, min(count, RING_FRAMES - 1) + 1):
            slot = (count - back) % RING_FRAMES
            if self.seconds[slot] <= seconds:
                np.copyto(row_out, self.rows[slot])
                return float(self.seconds[slot])
        return None


class LiveVisual:
    """The bridge's visual prompt: box + feed -> the row every separator reads, faded on loss and return."""

    def __init__(self, config: ModelConfig, separators, fade_frames: int, on_change: Callable[[str], None]):
        self.config = config
        self.row = np.zeros(config.prompt.visual_dim, np.float32)
        for separator in separators:
            separator.live_visual = self.row  # one row, rewritten in place before every hop
        self._fresh = np.zeros_like(self.row)
        self.fade_step = 1.0 / max(1, fade_frames)
        self.lookahead = separators[0].lookahead_frames if separators else 0
        self.on_change = on_change
        self.feed: VideoFeed | None = None
        self.box: tuple[float, float, float, float] | None = None
        self.available = False
        self._gain = 0.0
        self._hops = 0
        # A box given before the stream starts is in force from its first frame, as offline: no fade in.
        self._snap_in = True
        self._last_frame_seconds: float | None = None
        self.state = "no video source"

    def attach(self, feed: VideoFeed) -> None:
        self.feed = feed
        self.state = "no box" if self.box is None else "waiting for the first frame"
        feed.set_box(self.box)
        feed.start()

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()

    def restart(self) -> None:
        """A new stream: hop count from zero."""
        self._hops = 0
        self._snap_in = self.box is not None

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        self.box = None if box is None else clip_box(box)
        self._snap_in = self._hops == 0
        if self.feed is not None:
            self.feed.set_box(self.box)

    @property
    def prompting(self) -> bool:
        """The visual prompt takes part in the prompt now: a box, and frames arriving."""
        return self.box is not None and self.available

    def before_hop(self) -> None:
        """On the worker, once per hop: the row for this hop's model frame."""
        token = self._hops - self.lookahead
        self._hops += 1
        available = False
        if self.feed is not None and self.box is not None and token >= 0:
            stft = self.config.stft  # the time token_seconds gives, without an array per hop
            moment = ((token + 1) * stft.hop - stft.n_fft / 2) / stft.sample_rate
            shown = self.feed.latest_at(moment, self._fresh)
            self._last_frame_seconds = shown
            available = shown is not None and moment - shown <= STALL_SECONDS
            self.state = "live" if available else self._why_not(moment, shown)
        elif self.feed is not None:
            self.state = "no box" if self.box is None else "waiting for the first frame"
        if available != self.available:
            if available and self._snap_in:
                self._gain = 1.0
            self.available = available
            self.on_change(f"video: {self.state}")
        if available:
            self._snap_in = False
        target = 1.0 if available else 0.0
        step = self.fade_step
        self._gain = min(target, self._gain + step) if target > self._gain else max(target, self._gain - step)
        np.multiply(self._fresh, self._gain, out=self.row)

    def _why_not(self, moment: float, shown: float | None) -> str:
        feed = self.feed
        if feed.state != "playing":
            return f"video {feed.state}: the other prompts carry on"
        if shown is None:
            return "waiting for the first frame"
        return f"stalled: no video frame for {moment - shown:.2f} s; the other prompts carry on"

    def describe(self) -> str:
        """The visual part of the prompt while it takes part (a box with frames arriving), else ""."""
        if not self.prompting:
            return ""
        return "visual box " + ",".join(f"{value:.3f}" for value in self.box)

    def status(self) -> dict:
        feed = self.feed
        return {
            "source": feed.path if feed else None,
            "state": self.state,
            "box": list(self.box) if self.box else None,
            "frames": feed.count if feed else 0,
            "last_frame_seconds": None if self._last_frame_seconds is None else round(self._last_frame_seconds, 3),
            "frame_ms": round(feed.decode_ms, 3) if feed else None,
            "weight": round(self._gain, 3),
            "note": "" if self.config.prompt.visual_trained else UNTRAINED_NOTE,
        }
