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
TARGET_LATENCY_MS = 30.0


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


# Player control slots, shared with the compiled callbacks.
CLICKING, POSITION, CYCLES, SENT, HEARD, RECORDED = range(6)
MAX_CLICKS = 1024


class Player:
    """Plays a signal on a loop into samstream and records its output, with optional clicks.

    Player and recorder are two JACK clients (one doing both would close a loop through
    samstream, and JACK would hand it the output a period late), and both callbacks are
    compiled like samstream's own: the measuring side adds no interpreter-lock traffic.
    """

    def __init__(self, signal: np.ndarray, seconds: float, server: str | None = None):
        import jack

        from .jack_native import jack_address
        self.client = jack.Client("samstream-bench-play", servername=server)
        self.recorder = jack.Client("samstream-bench-record", servername=server)
        self.out = self.client.outports.register("out")
        self.inp = self.recorder.inports.register("in")
        self.signal = np.ascontiguousarray(signal, np.float32)
        self.control = np.zeros(8, np.int64)
        self.sent = np.zeros(MAX_CLICKS, np.int64)
        self.heard = np.zeros(MAX_CLICKS, np.int64)
        self.recorded = np.zeros(int(seconds * RATE) + RATE, np.float32)
        self._callbacks = compile_player(self, jack_address(self.client._ptr), jack_address(self.out._ptr),
                                         jack_address(self.recorder._ptr), jack_address(self.inp._ptr))

    @property
    def clicking(self) -> bool:
        return bool(self.control[CLICKING])

    @clicking.setter
    def clicking(self, on: bool) -> None:
        self.control[CLICKING] = int(on)

    @property
    def recorded_at(self) -> int:
        return int(self.control[RECORDED])

    def activate(self, inputs: int = 1) -> None:
        """Plays into samstream's first ``inputs`` ports, records its first output."""
        self.client.activate()
        self.recorder.activate()
        for index in range(inputs):
            self.client.connect(self.out, f"samstream:in_{index + 1}")
        self.recorder.connect("samstream:out_1", self.inp)

    def close(self) -> None:
        for client in (self.client, self.recorder):
            client.deactivate()
            client.close()

    def measured_delays(self) -> list[int]:
        heard = self.heard[:self.control[HEARD]]
        return [min((int(h - s) for h in heard if h >= s), default=-1) for s in self.sent[:self.control[SENT]]]


def compile_player(player: Player, play_client: int, out_port: int, record_client: int, in_port: int) -> tuple:
    from numba import carray, cfunc

    from .jack_native import (
        PROCESS_SIGNATURE,
        array_address,
        float_pointer,
        int_pointer,
        last_frame_time,
        port_buffer,
        register_process,
    )
    a_signal, length = array_address(player.signal), player.signal.size
    a_control, a_sent, a_heard = array_address(player.control), array_address(player.sent), array_address(player.heard)
    a_recorded, capacity = array_address(player.recorded), player.recorded.size

    @cfunc(PROCESS_SIGNATURE, nopython=True)
    def play(frames, argument):
        out = port_buffer(out_port, frames)
        control = carray(int_pointer(a_control), (8,))
        signal = carray(float_pointer(a_signal), (length,))
        control[CYCLES] += 1
        if control[CLICKING]:
            for index in range(frames):
                out[index] = 0.0
            if control[CYCLES] % 64 == 0 and control[SENT] < MAX_CLICKS:
                out[5] = 0.9
                carray(int_pointer(a_sent), (MAX_CLICKS,))[control[SENT]] = np.int64(last_frame_time(play_client)) + 5
                control[SENT] += 1
        else:
            for index in range(frames):
                out[index] = signal[(control[POSITION] + index) % length]
            control[POSITION] += frames
        return 0

    @cfunc(PROCESS_SIGNATURE, nopython=True)
    def record(frames, argument):
        heard = port_buffer(in_port, frames)
        control = carray(int_pointer(a_control), (8,))
        if control[CLICKING] and control[HEARD] < MAX_CLICKS:
            peak = np.int64(0)
            for index in range(np.int64(frames)):
                if abs(heard[index]) > abs(heard[peak]):
                    peak = index
            if abs(heard[peak]) > 0.5:
                now = np.int64(last_frame_time(record_client))
                carray(int_pointer(a_heard), (MAX_CLICKS,))[control[HEARD]] = now + peak
                control[HEARD] += 1
        start = control[RECORDED]
        frames = np.int64(frames)
        if start + frames <= capacity:
            recorded = carray(float_pointer(a_recorded), (capacity,))
            for index in range(frames):
                recorded[start + index] = heard[index]
            control[RECORDED] = start + frames
        return 0

    register_process(play_client, play)
    register_process(record_client, record)
    return play, record


def jack_running() -> bool:
    probe = subprocess.run(["jack_lsp"], capture_output=True, text=True)
    return probe.returncode == 0 and "system:" in probe.stdout


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_serve_on_jack(stack: ExitStack, options: list[str], name: str) -> tuple[subprocess.Popen, Osc]:
    """`samstream serve --backend jack` with ``options``, on the running JACK server or a dummy one of
    our own; both end with ``stack``. Returns the process and an OSC client for its port."""
    if not jack_running():
        environment = stack.enter_context(dummy_jack(f"samstream-{name}-{os.getpid()}"))
        os.environ["JACK_DEFAULT_SERVER"] = environment["JACK_DEFAULT_SERVER"]
    osc_port = free_udp_port()
    command = [sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "jack",
               "--client-name", "samstream", "--osc-port", str(osc_port), "--ws-port", "0", *options]
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stack.callback(lambda: serve.poll() is None and serve.terminate())
    banner = serve.stdout.readline()
    if "latency" not in banner:
        raise RuntimeError(f"serve did not start: {banner}{serve.stderr.read()[-1500:]}")
    return serve, Osc(osc_port)


def run_live_bench(out_dir: str, seconds: float, model: str | None = None, steps: int | None = None) -> dict:
    if seconds < 10:
        raise ValueError(f"--seconds must be at least 10 for the live bench, got {seconds:g}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mono = read_audio(EXAMPLE)[0].mean(axis=0).astype(np.float32)
    with ExitStack() as stack:
        options = ["--channels", "1", *(["--model", model] if model else []),
                   *(["--steps", str(steps)] if steps else [])]
        serve, osc = start_serve_on_jack(stack, options, "bench")
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
        "judgements": final.get("judgements", 0), "judge_ms_last": final.get("judge_ms"),
        "confidence_last": final.get("confidence"),
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
        f"| judge (live confidence, its own thread) | {results['judgements']} judgements, the last took "
        f"{results['judge_ms_last']} ms; last confidence {results['confidence_last']} |",
        f"| prompt switch (arrival to first hop, median / max of {results['prompt_switches']}) | "
        + (f"{switch:.1f} / {results['prompt_switch_ms_max']:.1f} ms, then a {results['crossfade_ms']:g} ms "
           "crossfade |" if switch is not None else "none measured |"),
        "",
        f"Target (no miss after warm-up, total latency at most {TARGET_LATENCY_MS:g} ms): {verdict}.",
        "",
    ])
