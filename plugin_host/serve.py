"""`samstream serve`: the live bridge with a backend and both control surfaces, until stopped."""
from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from pathlib import Path

from samstream.stream.engine import ConfigurationError

from .bridge import LiveBridge
from .control import ControlError, check_bind, check_port
from .osc_feedback import check_destination, parse_reply_address

# The audio callback takes the interpreter lock between other threads' bytecodes; Python's
# default 5 ms switch interval is a whole hop, so hand the lock over more often.
SWITCH_INTERVAL_SECONDS = 0.0005


def listening_port(text: str) -> int:
    """--osc-port and --ws-port: 0 (any free port, as the benchmarks use) or 1..65535."""
    try:
        port = int(text)
        if port != 0:
            check_port(port, "the port")
    except (ValueError, ControlError):
        raise argparse.ArgumentTypeError(f"must be a port 1..65535 (or 0: any free port), got {text!r}") from None
    return port


def reply_address(text: str) -> tuple[str, int]:
    try:
        return parse_reply_address(text)
    except ControlError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(commands) -> None:
    serve = commands.add_parser("serve", help="run the live bridge (JACK, PortAudio or a file) until stopped")
    serve.add_argument("--backend", choices=("jack", "portaudio", "file"), required=True)
    serve.add_argument("--model", help="model folder (default: the bundled model)")
    serve.add_argument("--steps", type=int, help="flow steps per hop (default: the fewest the model has)")
    serve.add_argument("--int8", action="store_true", help="the int8 hop graphs (see the model card for their cost)")
    serve.add_argument("--compute", dest="compute_device", choices=("cpu", "cuda", "auto"), default="cpu",
                       help="where the model runs (cuda needs samstream[gpu]; auto uses it when present)")
    serve.add_argument("--channels", type=int, default=2,
                       help="audio channels (jack, portaudio; default 2). The model runs once a hop on their mix "
                            "and one mask applies to every channel, keeping the stereo image: a channel adds only "
                            "its STFT, about 0.05 ms a hop")
    serve.add_argument("--input", help="file backend: the audio file to stream")
    serve.add_argument("--out", default="out/serve", help="file backend: folder for output/target/residual.wav")
    serve.add_argument("--realtime", action="store_true", help="file backend: pace the file in real time")
    serve.add_argument("--hold", action="store_true", help="file backend: keep serving control after the file")
    serve.add_argument("--block", type=int, default=128, help="host block (file, portaudio; default 128)")
    serve.add_argument("--device", help="portaudio: device index or a fragment of its name")
    serve.add_argument("--client-name", default="samstream", help="jack: client name (default samstream)")
    serve.add_argument("--connect", action="store_true", help="jack: connect to the physical ports")
    serve.add_argument("--text", default="", help="text prompt to start with")
    serve.add_argument("--mode", choices=("extract", "remove"), default="extract")
    serve.add_argument("--host", default="127.0.0.1", help="control address (default loopback)")
    serve.add_argument("--token", help="required by every control client; needed to bind beyond loopback")
    serve.add_argument("--osc-port", type=listening_port, default=9000, help="OSC (UDP) port (default 9000)")
    serve.add_argument("--ws-port", type=listening_port, default=9001,
                       help="WebSocket and control page (TCP) port (default 9001)")
    serve.add_argument("--osc-reply", metavar="[HOST:]PORT", type=reply_address,
                       help="fixed address that gets every OSC reply, /sam/error, state change and meter, "
                            "e.g. 9002 (loopback) for oscdump or a DAW's feedback port; another host needs --token")
    serve.add_argument("--no-control", action="store_true", help="no OSC or WebSocket server")
    serve.add_argument("--worker-time-ms", type=float,
                       help="the time the worker gets for a hop before a miss; the safety buffer is sized to it "
                            "(default: from the measured cost of a hop)")
    serve.add_argument("--max-latency-ms", type=float, default=30.0,
                       help="cap on the total latency (ms; default 30): the safety buffer is what fits under it")
    serve.add_argument("--judge", help="judge folder for the live confidence (implies --confidence; default: the "
                       "bundled model's judge/)")
    serve.add_argument("--confidence", action="store_true",
                       help="run the judge live for /sam/confidence (off by default: its process costs about 40 %% "
                            "of a core and, on a 2-core machine, brought back misses and xruns)")
    serve.add_argument("--no-judge", action="store_true", help="no live confidence (the default; kept for scripts)")
    serve.add_argument("--video", help="video source for /sam/prompt/visual/box: a file played in step with the "
                       "stream, or a V4L2 camera /dev/videoN (needs samstream[video])")
    serve.add_argument("--box", metavar="X,Y,W,H", help="visual box to start with on --video (0..1 of the frame)")
    serve.add_argument("--image-encoder", metavar="ONNX", help="your own image encoder for appearance features")
    serve.add_argument("--crossfade-ms", type=float, default=20.0, help="prompt and setting crossfades (ms)")


def make_backend(arguments: argparse.Namespace, bridge: LiveBridge):
    from . import backends
    if arguments.backend == "file":
        if not arguments.input:
            raise ConfigurationError("--backend file needs --input FILE")
        return backends.FileBackend(bridge, Path(arguments.input), Path(arguments.out), block=arguments.block,
                                    realtime=arguments.realtime)
    if arguments.backend == "jack":
        return backends.JackBackend(bridge, client_name=arguments.client_name, channels=arguments.channels,
                                    connect=arguments.connect)
    return backends.PortAudioBackend(bridge, device=arguments.device, channels=arguments.channels,
                                     block=arguments.block)


def host_block_for(arguments: argparse.Namespace) -> int | None:
    if arguments.backend == "jack":
        import jack
        try:
            probe = jack.Client("samstream-probe", no_start_server=True)
        except jack.JackOpenError:
            raise ConfigurationError("no JACK server is running (start one, e.g. `jackd -d dummy -r 48000 "
                                     "-p 128`)") from None
        try:
            return probe.blocksize
        finally:
            probe.close()
    return arguments.block


def banner(arguments: argparse.Namespace, backend, bridge: LiveBridge, servers: list) -> str:
    status = bridge.status()
    line = (f"samstream serve: {backend.name} backend, {bridge.processor.channels} channel(s) at "
            f"{bridge.sample_rate} Hz, latency {status['latency_samples']} samples ({status['latency_ms']:.2f} ms)")
    if servers:
        osc, web = servers
        token = f"?token={arguments.token}" if arguments.token else ""
        line += f", OSC udp://{arguments.host}:{osc.port}, control page http://{arguments.host}:{web.port}/{token}"
        if arguments.osc_reply:
            host, port = arguments.osc_reply
            line += f", OSC feedback to udp://{host}:{port}"
    return line


def start_video(arguments: argparse.Namespace, bridge: LiveBridge) -> None:
    """--video and --box: the bridge's video source, decoding on its own thread from now on."""
    if (arguments.box or arguments.image_encoder) and not arguments.video:
        raise ConfigurationError("--box and --image-encoder need --video")
    if arguments.video:
        from .video import parse_box
        box = parse_box(arguments.box).box if arguments.box else None
        bridge.attach_video(arguments.video, image_encoder=arguments.image_encoder)
        if box is not None:
            bridge.controller.apply("/sam/prompt/visual/box", list(box))


def run(arguments: argparse.Namespace) -> int:
    if not arguments.no_control:
        check_bind(arguments.host, arguments.token)
        if arguments.osc_reply:
            check_destination(arguments.osc_reply[0], arguments.token)
    if not 1 <= arguments.block <= 4096:
        raise ConfigurationError(f"--block must be 1..4096, got {arguments.block}")
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    threaded = arguments.backend != "file" or arguments.realtime
    bridge = LiveBridge(Path(arguments.model) if arguments.model else None, steps=arguments.steps,
                        host_block=host_block_for(arguments), threaded=threaded,
                        crossfade_ms=arguments.crossfade_ms, max_latency_ms=arguments.max_latency_ms,
                        worker_time_ms=arguments.worker_time_ms,
                        device=arguments.compute_device, variant="int8" if arguments.int8 else "fp32",
                        judge_dir=Path(arguments.judge) if arguments.judge else None,
                        judge=(arguments.confidence or arguments.judge is not None) and not arguments.no_judge)
    backend = make_backend(arguments, bridge)
    servers = []
    stop = threading.Event()

    def on_signal(number, frame) -> None:
        stop.set()
        backend.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # Everything that takes the interpreter lock for long (imports, the first prompt's
        # encoding, server start-up) happens before the audio callbacks begin.
        backend.prepare()
        bridge.controller.apply("/sam/mode", [arguments.mode])
        if arguments.text:
            bridge.controller.apply("/sam/prompt/text", [arguments.text])
        start_video(arguments, bridge)
        bridge.settle()
        if not arguments.no_control:
            from .osc_server import OscServer
            from .ws_server import WebSocketServer
            servers = [OscServer(bridge.controller, arguments.host, arguments.osc_port, arguments.token,
                                 reply_to=arguments.osc_reply),
                       WebSocketServer(bridge.controller, arguments.host, arguments.ws_port, arguments.token)]
            for server in servers:
                server.start()
        # Everything made so far lives as long as the stream: move it out of the collector's
        # reach, so a full collection (which stops whichever thread holds the interpreter
        # lock, the worker included) walks only what the stream makes from now on.
        gc.collect()
        gc.freeze()
        backend.start()
        print(banner(arguments, backend, bridge, servers), flush=True)
        if arguments.backend == "file":
            summary = backend.run()
            print(f"samstream serve: wrote {arguments.out}/output.wav, target.wav, residual.wav "
                  f"({summary['seconds']:.2f} s{'' if summary['complete'] else ', stopped early'})", flush=True)
            while arguments.hold and not stop.wait(0.5):
                pass
        else:
            while not stop.wait(0.5):
                pass
    finally:
        for server in servers:
            server.stop()
        if arguments.backend != "file":
            backend.close()
    status = bridge.status()
    print(f"samstream serve: stopped after {status['stream_seconds']:.1f} s, {status['misses']} misses, "
          f"{status['xruns']} xruns", flush=True)
    return 0
