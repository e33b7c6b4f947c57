"""The live bridge's prompts: what the controller asks for, and the thread that hands it to the model.

A control surface never waits here. Every prompt change replaces one immutable
``PromptRequest`` whole (the latest wins: a storm of prompts coalesces into the last one)
and wakes the prompt thread, which encodes the text (cached per text by the encoder),
takes the example embedding from the stream's own history and hands the result to the
model, which takes it at the next hop boundary with a crossfade.

A positive span whose end the stream has not reached yet is deferred, never waited on:
the rest of the prompt goes to the model at once, and the span's example follows when the
stream has passed its end. Spans that can never give an example (too short, older than
the history, ending more than ``MAX_AHEAD_SECONDS`` ahead) are refused when they arrive
(``check_span``), so what the controller lists is what the model runs or is about to run.

The model's applied ``Prompt`` carries the ``PromptRequest`` it was made from, as the
request was realised (``example_span`` is the span whose example it holds): that is what
``running`` reports, the engine's own account of its prompt.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from samstream.kernels.live import record_history
from samstream.models.config import ANCHOR_NEGATIVE, ANCHOR_POSITIVE
from samstream.models.runtime import Prompt, compressed_frames

from .control import ControlError

HISTORY_SECONDS = 30.0
# A span may end this far ahead of the stream; its example is taken once the stream gets there.
MAX_AHEAD_SECONDS = 10.0
MAX_ANCHOR_SPANS = 32
# How often the prompt thread looks again while a span's end is still ahead of the stream.
DEFERRED_POLL_SECONDS = 0.005
IDLE_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class PromptRequest:
    """One prompt as asked for; replaced whole on every change, numbered in order."""

    version: int = 0
    text: str = ""
    example_span: tuple[int, int] | None = None  # stream samples [first, stop) of the positive span or capture


class LivePrompts:
    """Prompt state for a live stream: requests from control threads, a prompt thread, per-hop anchors."""

    def __init__(self, config, model, visual, stream_samples: Callable[[], int],
                 on_sent: Callable[[np.ndarray | None], None], note: Callable[[str], None]):
        self.config = config
        self.model = model  # StepSwitch: set_prompt, set_live_anchor, active.running_prompt
        self.visual = visual
        self.stream_samples = stream_samples
        self.on_sent = on_sent
        self.note = note
        self.encoder = None
        self.sample_rate = config.stft.sample_rate
        self._request = PromptRequest()
        self._request_lock = threading.Lock()  # held only to replace the request: never across work
        self._sent = PromptRequest()  # as realised in the last prompt handed to the model
        self._visual_dirty = False
        self._deferred = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self.anchor_spans: tuple[tuple[int, int, int], ...] = ()  # (first, stop, anchor), replaced whole
        self.capture_start: int | None = None
        self.requested_at: tuple[float, int] | None = None  # (perf_counter, stream sample) of the last text
        self.applied_at: tuple[float, int] | None = None  # when a hop first ran the prompt sent after it
        self._requested_version = 0
        self._example: np.ndarray | None = None  # the example of ``_sent.example_span``
        self._history = np.zeros(1, np.float32)
        self._history_count = np.zeros(1, np.int64)

    # stream side ----------------------------------------------------------------------

    def configure(self, sample_rate: int, channels: int) -> None:
        self.sample_rate = sample_rate
        self._history = np.zeros(1 << int(HISTORY_SECONDS * sample_rate).bit_length(), np.float32)
        self._history_count = np.zeros(1, np.int64)
        record_history(np.zeros((channels, 4), np.float32), self._history, self._history_count)  # compiled now
        self._history_count[0] = 0

    def start(self, encoder) -> None:
        self.encoder = encoder
        self._running = True
        self._thread = threading.Thread(target=self._work, name="samstream-prompts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def before_hop(self, stream_sample: int, hop_in: np.ndarray) -> None:
        """On the worker, before each hop: this hop's anchor, the history, the switch time."""
        anchor = 0
        if self.capture_start is not None:
            anchor = ANCHOR_POSITIVE
        else:
            for first, stop, sign in self.anchor_spans:
                if first <= stream_sample < stop:
                    anchor = sign
        self.model.set_live_anchor(anchor)
        record_history(hop_in, self._history, self._history_count)
        if self._deferred:
            span = self._request.example_span
            if span is not None and self._history_count[0] >= span[1]:
                self._wake.set()
        if self.requested_at is not None and self.applied_at is None and not self.model.active.prompt_pending \
                and self.running.version >= self._requested_version:
            self.applied_at = (time.perf_counter(), stream_sample)

    # control side: never waits ----------------------------------------------------------

    def request(self, **changes) -> int:
        """Replace the request with these changes; returns its version."""
        with self._request_lock:
            self._request = request = replace(self._request, version=self._request.version + 1, **changes)
        self._wake.set()
        return request.version

    def set_text(self, text: str) -> None:
        arrived = (time.perf_counter(), self.stream_samples())
        self.requested_at = self.applied_at = None  # the worker measures nothing until both are set again
        self._requested_version = self.request(text=text)
        self.requested_at = arrived

    def check_span(self, start: float, stop: float, positive: bool) -> None:
        """Refuse, with the reason, a span that could never take effect; stream seconds, absolute."""
        rate = self.sample_rate
        now = self.stream_samples() / rate
        if stop > now + MAX_AHEAD_SECONDS:
            raise ControlError(f"the span ends at {stop:.3f} s and the stream is at {now:.3f} s: a span may end at "
                               f"most {MAX_AHEAD_SECONDS:g} s ahead (hold /sam/prompt/capture while the target "
                               f"sounds instead)")
        if not positive:
            if stop <= now:
                raise ControlError(f"the negative span ended at {stop:.3f} s, before the stream's {now:.3f} s: "
                                   f"it marks where the target is absent from now on")
            if len(self.anchor_spans) >= MAX_ANCHOR_SPANS and all(span[1] > now * rate for span in self.anchor_spans):
                raise ControlError(f"too many negative spans ahead (at most {MAX_ANCHOR_SPANS})")
            return
        oldest = max(0.0, now - (self._history.shape[0] - rate) / rate)  # a second spare for the prompt thread
        shortest = self.config.stft.n_fft / rate
        if stop - max(start, oldest) < shortest:
            if stop <= oldest:
                raise ControlError(f"the span {start:.3f}..{stop:.3f} s is older than the history, which reaches "
                                   f"back to {oldest:.3f} s (the stream is at {now:.3f} s)")
            raise ControlError(f"the span {start:.3f}..{stop:.3f} s is too short to take an example from "
                               f"(at least {1000 * shortest:.0f} ms)")

    def add_span(self, start: float, stop: float, positive: bool) -> None:
        first, last = round(start * self.sample_rate), round(stop * self.sample_rate)
        if positive:
            self.request(example_span=(first, last))
            return
        now = self.stream_samples()
        self.anchor_spans = (*[span for span in self.anchor_spans if span[1] > now], (first, last, ANCHOR_NEGATIVE))

    def set_capture(self, holding: bool) -> tuple[float, float] | None:
        """Press: the target sounds from now on. Release: the held span becomes the example; returns it."""
        now = self.stream_samples()
        if holding:
            if self.capture_start is None:
                self.capture_start = now
            return None
        if self.capture_start is None:
            return None
        first, self.capture_start = self.capture_start, None
        if now - first < self.config.stft.n_fft:
            self.note("capture too short to take an example from (kept the previous example)")
            return None
        self.request(example_span=(first, now))
        return first / self.sample_rate, now / self.sample_rate

    def clear(self) -> None:
        self.anchor_spans = ()
        self.capture_start = None
        self.request(text="", example_span=None)

    def visual_changed(self) -> None:
        """From the worker or a control thread: the visual row joined or left the prompt."""
        self._visual_dirty = True
        self._wake.set()

    @property
    def sent(self) -> PromptRequest:
        """The request as handed to the model last (it runs from the next hop on)."""
        return self._sent

    @property
    def pending(self) -> bool:
        """A change asked for has not been handed to the model yet (a deferred span's example aside)."""
        return self._request.version != self._sent.version or self._visual_dirty

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every change asked for so far is handed to the model (for tests and start-up)."""
        deadline = time.monotonic() + timeout
        while self._running and self.pending and time.monotonic() < deadline:
            time.sleep(0.001)

    # prompt thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while self._running:
            self._wake.wait(DEFERRED_POLL_SECONDS if self._deferred else IDLE_POLL_SECONDS)
            self._wake.clear()
            if not self._running:
                return
            try:
                self._hand_over()
            except Exception as error:  # a prompt that fails must not take the stream down
                self._sent = replace(self._sent, version=self._request.version)
                self._visual_dirty = False
                self.note(f"prompt refused: {error}")

    def _hand_over(self) -> None:
        """Bring the model's prompt up to the latest request, without waiting on anything."""
        request = self._request
        visual_dirty, self._visual_dirty = self._visual_dirty, False
        if request.version == self._sent.version and not self._deferred:
            if not visual_dirty or self._sent.text or self._sent.example_span is not None:
                return  # the visual row is fed every hop; with other prompts in force nothing is redone
        text_embedding = self.encoder.encode(request.text) if request.text.strip() else None
        example_span, example = self._example_for(request.example_span)
        realised = replace(request, example_span=example_span)
        self.model.set_prompt(Prompt(text_embedding=text_embedding, example_features=example,
                                     visual=self.visual.row if self.visual.prompting else None, request=realised))
        self._sent = realised
        self.on_sent(text_embedding)

    def _example_for(self, span: tuple[int, int] | None) -> tuple[tuple[int, int] | None, np.ndarray | None]:
        """The span whose example the prompt will hold, and that example; a span still ahead keeps the last one."""
        self._deferred = False
        if span is None or span == self._sent.example_span:
            return span, None if span is None else self._example
        if int(self._history_count[0]) < span[1]:
            self._deferred = True
            return self._sent.example_span, self._example if self._sent.example_span is not None else None
        self._example = self._example_from_history(*span)
        return span, self._example

    def _example_from_history(self, first: int, stop: int) -> np.ndarray:
        count = int(self._history_count[0])
        first, stop = max(first, count - self._history.shape[0], 0), min(stop, count)
        mask = self._history.shape[0] - 1
        audio = self._history[np.arange(first, stop) & mask]
        return compressed_frames(audio, self.config, level=True).mean(axis=0).astype(np.float32)

    # reporting --------------------------------------------------------------------------

    @property
    def running(self) -> PromptRequest:
        """The request behind the prompt the model runs now."""
        return self.model.active.running_prompt.request or PromptRequest()

    def describe(self) -> str:
        """The prompt handed to the model, in words: it runs from the next hop boundary on."""
        running = self._sent
        parts = []
        if running.text:
            parts.append(f"text {running.text!r}")
        if running.example_span is not None:
            first, stop = running.example_span
            parts.append(f"example of {(stop - first) / self.sample_rate:.1f} s")
        if self.capture_start is not None:
            parts.append("capturing")
        if self.visual.prompting:
            parts.append(self.visual.describe())
        return ", ".join(parts)
