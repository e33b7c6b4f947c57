"""Third-party JACK clients that measure a bridge's latency: an impulse rig and `jack_iodelay`."""
from __future__ import annotations

import subprocess
import time

import numpy as np


class ImpulseRig:
    """Two JACK clients around samstream: one sends clicks, one hears them, both note frame times.

    ``threshold``: the level a click must reach on the way back; a host rate above the model's
    band-limits the click to the model's band, which lowers its peak.
    """

    def __init__(self, server: str, into: str = "samstream:in_1", out_of: str = "samstream:out_1",
                 threshold: float = 0.5):
        import jack
        self.source = jack.Client("probe-source", servername=server)
        self.sink = jack.Client("probe-sink", servername=server)
        self.out = self.source.outports.register("out")
        self.inp = self.sink.inports.register("in")
        self.into, self.out_of, self.threshold = into, out_of, threshold
        self.sent: list[int] = []
        self.heard: list[int] = []
        self.cycles = 0
        self.source.set_process_callback(self._send)
        self.sink.set_process_callback(self._hear)
        # A cycle JACK dropped (a client late on a loaded machine) loses or shifts the click
        # through no fault of the bridge: its frame time marks the clicks it spoils.
        self.xrun_frames: list[int] = []
        self.sink.set_xrun_callback(lambda delay_us: self.xrun_frames.append(self.sink.frame_time))

    def _send(self, frames: int) -> None:
        buffer = self.out.get_array()
        buffer[:] = 0.0
        self.cycles += 1
        if self.cycles % 100 == 50:
            buffer[7] = 0.9
            self.sent.append(self.source.last_frame_time + 7)

    def _hear(self, frames: int) -> None:
        buffer = self.inp.get_array()
        peak = int(np.argmax(np.abs(buffer)))
        if abs(buffer[peak]) > self.threshold:
            self.heard.append(self.sink.last_frame_time + peak)

    def __enter__(self):
        self.source.activate()
        self.sink.activate()
        self.source.connect(self.out, self.into)
        self.sink.connect(self.out_of, self.inp)
        return self

    def __exit__(self, *exc):
        for client in (self.source, self.sink):
            client.deactivate()
            client.close()


def delays(rig: ImpulseRig) -> list[tuple[int, int]]:
    """(sent frame, delay) of every click but the newest, which may be unheard yet."""
    sent_frames, heard = list(rig.sent)[:-1], list(rig.heard)  # the callbacks keep appending
    return [(sent, min((h - sent for h in heard if h >= sent), default=-1)) for sent in sent_frames]


def clean_delays(rig: ImpulseRig, latency: int, margin: int = 4096) -> list[int]:
    """The delays of the clicks no xrun came near."""
    return [delay for sent, delay in delays(rig)
            if not any(sent - margin <= frame <= sent + latency + margin for frame in rig.xrun_frames)]


def impulse_delays(server: str, latency: int, **ports) -> list[int]:
    """At least three clean click delays through the given ports (fewer if 30 s pass)."""
    with ImpulseRig(server, **ports) as rig:
        deadline = time.monotonic() + 30
        while len(clean_delays(rig, latency)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
    return clean_delays(rig, latency)


def jack_iodelay_frames(server: str, environment: dict, into: str = "samstream:in_1",
                        out_of: str = "samstream:out_1") -> float:
    """`jack_iodelay` looped through ``into`` -> ``out_of``: its round trip in frames, once steady."""
    tool = subprocess.Popen(["jack_iodelay"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        for _ in range(100):
            ports = subprocess.run(["jack_lsp", "-s", server], env=environment, capture_output=True,
                                   text=True).stdout
            if "jack_delay:out" in ports:
                break
            time.sleep(0.1)
        subprocess.run(["jack_connect", "-s", server, "jack_delay:out", into], env=environment, check=True)
        subprocess.run(["jack_connect", "-s", server, out_of, "jack_delay:in"], env=environment, check=True)
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = tool.stdout.readline()
            lines.append(line)
            readings = [entry for entry in lines if "total roundtrip latency" in entry
                        and float(entry.split("frames")[0].split()[-1]) > 0]
            if len(readings) >= 3:
                break
    finally:
        tool.terminate()
        tool.wait(timeout=10)
    measured = [line for line in lines if "total roundtrip latency" in line]
    assert measured, "".join(lines[-10:])
    return float(measured[-1].split("frames")[0].split()[-1])
