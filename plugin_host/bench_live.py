"""`samstream bench --live`: the whole live path on JACK, measured from outside.

`samstream serve --backend jack` runs as its own process on a JACK server (our own
`jackd -d dummy` at 48 kHz, 128-frame periods, unless one is already running). Two JACK
clients in this process play the bundled example into it and record what comes out.
First, in bypass, clicks measure the latency end to end, to compare with the latency
the bridge reports and publishes. Then text prompts and modes change every few seconds
over OSC while the stream runs, and the bridge's own counters are read back at the end:
per-hop compute, misses, xruns and the time from a prompt's arrival to the first hop
that runs with it.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from pythonosc import osc_message_builder
from pythonosc.osc_message import OscMessage

from .audio_files import read_audio
from .jack_server import PERIOD, RATE, dummy_jack

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "speech_hum.flac"
PROMPTS = ("speech", "mains hum", "a man speaking", "hum")
TARGET_LATENCY_MS = 25.0


class Osc:
    def __init__(self, port: int):
        self.address = ("127.0.0.1", port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(5)

    def send(self, path: str, *args) -> None:
        builder = osc_message_builder.OscMessageBuilder(address=path)
        for value in args:
            builder.add_arg(value)
        self.socket.sendto(builder.build().dgram, self.address)

    def ask(self, path: str) -> dict:
        """Send a query and return its reply's name/value pairs."""
        self.send(path)
        while True:
            message = OscMessage(self.socket.recvfrom(65536)[0])
            if message.address == path:
                return dict(zip(message.params[0::2], message.params[1::2], strict=True))

    def status(self) -> dict:
        return self.ask("/sam/status")

    def close(self) -> None:
        self.socket.close()


class Player:
    """Plays a signal on a loop into samstream and records its output, with optional clicks.

    Player and recorder are two JACK clients: one client doing both would close a loop
    through samstream, and JACK would then hand it the output one period late.
    """

    def __init__(self, signal: np.ndarray, seconds: float, server: str | None = None):
        import jack
        self.client = jack.Client("samstream-bench-play", servername=server)
        self.recorder = jack.Client("samstream-bench-record", servername=server)
        self.out = self.client.outports.register("out")
        self.inp = self.recorder.inports.register("in")
        self.signal = signal
        self.position = 0
        self.clicking = False
        self.clicks_sent: list[int] = []
        self.clicks_heard: list[int] = []
        self.recorded = np.zeros(int(seconds * RATE) + RATE, np.float32)
        self.recorded_at = 0
        self.cycles = 0
        self.client.set_process_callback(self._play)
        self.recorder.set_process_callback(self._record)

    def activate(self) -> None:
        self.client.activate()
        self.recorder.activate()
        self.client.connect(self.out, "samstream:in_1")
        self.recorder.connect("samstream:out_1", self.inp)

    def close(self) -> None:
        for client in (self.client, self.recorder):
            client.deactivate()
            client.close()

    def _record(self, frames: int) -> None:
        heard = self.inp.get_array()
        if self.clicking:
            peak = int(np.argmax(np.abs(heard)))
            if abs(heard[peak]) > 0.5:
                self.clicks_heard.append(self.recorder.last_frame_time + peak)
        if self.recorded_at + frames <= self.recorded.size:
            self.recorded[self.recorded_at:self.recorded_at + frames] = heard
            self.recorded_at += frames

    def _play(self, frames: int) -> None:
        out = self.out.get_array()
        now = self.client.last_frame_time
        self.cycles += 1
        if self.clicking:
            out[:] = 0.0
            if self.cycles % 64 == 0:
                out[5] = 0.9
                self.clicks_sent.append(now + 5)
        else:
            start = self.position % self.signal.size
            stop = min(start + frames, self.signal.size)
            out[:stop - start] = self.signal[start:stop]
            out[stop - start:] = self.signal[:frames - (stop - start)]
            self.position += frames

    def measured_delays(self) -> list[int]:
        return [min((h - s for h in self.clicks_heard if h >= s), default=-1) for s in self.clicks_sent]


def jack_running() -> bool:
    probe = subprocess.run(["jack_lsp"], capture_output=True, text=True)
    return probe.returncode == 0 and "system:" in probe.stdout


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_live_bench(out_dir: str, seconds: float, model: str | None = None, steps: int | None = None) -> dict:
    if seconds < 10:
        raise ValueError(f"--seconds must be at least 10 for the live bench, got {seconds:g}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    signal, _ = read_audio(EXAMPLE)
    mono = signal.mean(axis=0).astype(np.float32)
    with ExitStack() as stack:
        if not jack_running():
            environment = stack.enter_context(dummy_jack(f"samstream-bench-{os.getpid()}"))
            os.environ["JACK_DEFAULT_SERVER"] = environment["JACK_DEFAULT_SERVER"]
        osc_port = free_udp_port()
        command = [sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack", "--channels",
                   "1", "--client-name", "samstream", "--osc-port", str(osc_port), "--ws-port", "0"]
        command += ["--model", model] if model else []
        command += ["--steps", str(steps)] if steps else []
        serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stack.callback(lambda: serve.poll() is None and serve.terminate())
        banner = serve.stdout.readline()
        if "latency" not in banner:
            raise RuntimeError(f"serve did not start: {banner}{serve.stderr.read()[-1500:]}")
        osc = Osc(osc_port)
        player = Player(mono, seconds)
        player.activate()
        stack.callback(player.close)
        # Phase 1: clicks in bypass, the end-to-end latency.
        osc.send("/sam/bypass", 1)
        player.clicking = True
        time.sleep(3.0)
        player.clicking = False
        osc.send("/sam/bypass", 0)
        reported = osc.status()
        # Phase 2: the example, with prompts and modes changing on the fly.
        switches = []
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < seconds - 3.0:
            osc.send("/sam/prompt/text", PROMPTS[index % len(PROMPTS)])
            if index % 3 == 2:
                osc.send("/sam/mode", "remove" if index % 2 else "extract")
            time.sleep(2.5)
            switch = osc.status().get("prompt_switch_ms")
            if isinstance(switch, float):
                switches.append(switch)
            index += 1
        final = osc.status()
        serve.terminate()
        serve.communicate(timeout=30)
    delays = [delay for delay in player.measured_delays() if delay >= 0]
    measured = int(np.median(delays)) if delays else -1
    results = {
        "seconds": seconds, "sample_rate": RATE, "period": PERIOD,
        "reported_latency_samples": reported["latency_samples"], "reported_latency_ms": reported["latency_ms"],
        "measured_latency_samples": measured, "measured_latency_all_equal": len(set(delays)) == 1,
        "clicks_measured": len(delays), "safety_samples": reported["safety_samples"],
        "hop_ms_p50": final["hop_ms_p50"], "hop_ms_p99": final["hop_ms_p99"], "hop_ms_max": final["hop_ms_max"],
        "hops": final["hops"], "misses": final["misses"], "xruns": final["xruns"],
        "first_miss_seconds": final["first_miss_seconds"], "last_miss_seconds": final["last_miss_seconds"],
        "prompt_switches": len(switches),
        "prompt_switch_ms_median": float(np.median(switches)) if switches else None,
        "prompt_switch_ms_max": float(np.max(switches)) if switches else None,
        "crossfade_ms": final["crossfade_ms"], "steps": final["steps"],
        "target_latency_ms": TARGET_LATENCY_MS,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render_report(results))
    print(render_report(results))
    return results


def render_report(results: dict) -> str:
    verdict = "met" if results["misses"] == 0 and results["reported_latency_ms"] <= TARGET_LATENCY_MS else "not met"
    switch = results["prompt_switch_ms_median"]
    return "\n".join([
        "# samstream live benchmark",
        "",
        f"JACK dummy server, {results['sample_rate']} Hz, period {results['period']}, {results['seconds']:g} s, "
        f"{results['steps']} flow step(s) per hop.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| reported latency | {results['reported_latency_samples']} samples "
        f"({results['reported_latency_ms']:.2f} ms) |",
        f"| measured latency (clicks in bypass, median of {results['clicks_measured']}) | "
        f"{results['measured_latency_samples']} samples, all equal: {results['measured_latency_all_equal']} |",
        f"| safety buffer | {results['safety_samples']} samples |",
        f"| per-hop compute p50 / p99 / max | {results['hop_ms_p50']:.3f} / {results['hop_ms_p99']:.3f} / "
        f"{results['hop_ms_max']:.3f} ms |",
        f"| hops, misses, xruns | {results['hops']}, {results['misses']}, {results['xruns']} |",
        f"| first / last miss (stream seconds) | {results['first_miss_seconds']} / {results['last_miss_seconds']} |",
        f"| prompt switch (arrival to first hop, median / max of {results['prompt_switches']}) | "
        + (f"{switch:.1f} / {results['prompt_switch_ms_max']:.1f} ms, then a {results['crossfade_ms']:g} ms "
           "crossfade |" if switch is not None else "none measured |"),
        "",
        f"Target (no miss after warm-up, total latency at most {TARGET_LATENCY_MS:g} ms): {verdict}.",
        "",
    ])
