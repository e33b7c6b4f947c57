"""The `samstream` command line.

Every failure the user can cause (a missing file, an unreadable format, an unknown
option, a bad value) ends with one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import sys

from samstream.stream.engine import ConfigurationError

from . import data_cli, judge_cli, model_cli, separate_cli, serve
from .audio_files import AudioFileError

USER_ERRORS = (AudioFileError, ConfigurationError, ValueError, OSError)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="samstream", description="Live, prompt-driven audio source separation.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    demo = commands.add_parser("demo", help="stream the bundled example through the engine; print latencies")
    demo.add_argument("--input", help="audio file to stream instead of the bundled example")
    demo.add_argument("--out", default="out/demo", help="folder for the output (default: out/demo)")

    bench = commands.add_parser("bench", help="benchmarks; writes report.md and results.json",
                                description="Without --kernels or --live: the separation report on the "
                                            "validation set (or --folder F), per class and mean.")
    bench.add_argument("--kernels", action="store_true", help="per-block cost of the DSP kernels and rings")
    bench.add_argument("--live", action="store_true", help="the live bridge on a JACK dummy server, measured")
    bench.add_argument("--model", help="model folder (default: the bundled model)")
    bench.add_argument("--steps", type=int, help="--live: flow steps per hop")
    bench.add_argument("--soak", type=float, metavar="SECONDS",
                       help="--live: run serve as shipped this long with a prompt and count misses per minute")
    bench.add_argument("--load", type=int, default=0, metavar="N", help="--live --soak: N busy processes beside it")
    bench.add_argument("--serve-options", default="", metavar="'OPTIONS'",
                       help="--live --soak: options added to serve's own defaults, e.g. --serve-options='--confidence'")
    bench.add_argument("--device", choices=("cpu", "cuda", "auto"),
                       help="--live: time the engine on this device instead of the JACK bridge: per-hop compute "
                            "and how many 48 kHz streams fit in one model call per hop (cuda needs samstream[gpu])")
    bench.add_argument("--streams", type=int, default=64,
                       help="--live --device: the largest batch of streams to try (default 64)")
    bench.add_argument("--threads", type=int, default=1, help="--live --device: ONNX Runtime threads on the CPU")
    bench.add_argument("--out", help="folder for the report (default: bench_out/report for the separation "
                                     "report, bench_out otherwise)")
    bench.add_argument("--seconds", type=float, default=1.0, help="time budget per measured case")
    bench.add_argument("--data", default="data/corpus", help="corpus folder; its validation/ set is measured")
    bench.add_argument("--folder", help="a folder of mixtures with references instead: F/index.jsonl, one row "
                                        "a line with mixture, target, interferer (paths relative to F), "
                                        "target_class, interferer_class, caption")
    bench.add_argument("--per-class", type=int, default=2, help="mixtures per target class (0: all; default 2)")
    bench.add_argument("--streamed", type=int, default=4,
                       help="also run the live path on the first N mixtures (default 4)")
    bench.add_argument("--teacher", help="torch checkpoint of the multi-step teacher (default: the --model folder)")
    bench.add_argument("--judge", help="judge folder whose correlation the report gives (default: the bundled one)")
    bench.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                       help="print B - A of two results.json files, per class and mean")
    separate_cli.register(commands)
    serve.register(commands)
    model_cli.register(commands)
    data_cli.register(commands)
    judge_cli.register(commands)
    return parser


def run(arguments: argparse.Namespace) -> int:
    if arguments.command == "demo":
        from .demo import run_demo
        run_demo(arguments.input, arguments.out)
    elif arguments.command == "bench":
        if arguments.compare:
            from .bench_compare import compare
            print(compare(*arguments.compare))
            return 0
        if (arguments.soak is not None or arguments.load or arguments.serve_options) and not arguments.live:
            raise ValueError("--soak, --load and --serve-options go with --live (samstream bench --live --soak 600)")
        if arguments.device and not arguments.live:
            raise ValueError("--device goes with --live (samstream bench --live --device cuda)")
        if not (arguments.kernels or arguments.live):
            from .bench_report import run_report
            return run_report(arguments)
        if not arguments.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {arguments.seconds}")
        if arguments.kernels:
            from .bench_kernels import run_kernel_bench
            run_kernel_bench(arguments.out or "bench_out", arguments.seconds)
        if arguments.live and arguments.device:
            from .bench_streams import run_stream_bench
            run_stream_bench(arguments.out or "bench_out", arguments.device, arguments.streams, arguments.model,
                             arguments.steps, arguments.threads, arguments.seconds)
        elif arguments.live and arguments.soak is not None:
            from .bench_soak import run_soak_bench
            run_soak_bench(arguments.out or "bench_out", arguments.soak, arguments.load, arguments.serve_options)
        elif arguments.live:
            from .bench_live import run_live_bench
            run_live_bench(arguments.out or "bench_out", arguments.seconds, arguments.model, arguments.steps)
    elif arguments.command == "separate":
        return separate_cli.run(arguments)
    elif arguments.command == "serve":
        return serve.run(arguments)
    elif arguments.command == "train":
        return model_cli.run_train(arguments)
    elif arguments.command == "distill":
        return model_cli.run_distill(arguments)
    elif arguments.command == "export":
        return model_cli.run_export(arguments)
    elif arguments.command == "average":
        return model_cli.run_average(arguments)
    elif arguments.command == "data":
        return data_cli.run(arguments)
    elif arguments.command == "judge":
        return judge_cli.run(arguments)
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return run(arguments)
    except USER_ERRORS as error:
        print(f"samstream {arguments.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"samstream {arguments.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
