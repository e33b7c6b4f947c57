"""``samstream data build``: the command-line face of ``samstream.models.data``.

``register(commands)`` adds the ``data`` sub-command to the main parser's
sub-parsers; ``run(arguments)`` executes it. User errors raise ValueError/OSError
subclasses with one clear line (the main CLI prints ``samstream data: <message>``).
"""
from __future__ import annotations

import argparse
import os

DEFAULT_ROOT = os.path.join("data", "corpus")


def register(commands) -> argparse.ArgumentParser:
    data = commands.add_parser("data", help="build the training corpus and the validation set")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    build = actions.add_parser("build", help="install packages, render sources, write manifest + validation set")
    build.add_argument("--root", default=DEFAULT_ROOT, help=f"corpus folder (default: {DEFAULT_ROOT})")
    build.add_argument("--only", action="append", metavar="FAMILY",
                       help="render only this family (repeatable): speech, instruments, drums, effects, noise")
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                       help="processes (default: all cores)")
    build.add_argument("--scale", type=float, default=1.0,
                       help="multiply the hours of generated material (default 1.0)")
    build.add_argument("--seed", type=int, default=20261130, help="corpus seed (default 20261130)")
    build.add_argument("--no-install", action="store_true", help="never call apt-get; fail if a package is missing")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--validation-only", action="store_true",
                       help="(re)build only the validation set from an existing corpus and check its hash")
    build.add_argument("--no-validation", action="store_true", help="skip the validation set")
    build.add_argument("--update-hash", action="store_true",
                       help="write the validation set's hash to the repository's hash file")
    build.add_argument("--user-folder", metavar="DIR", help="also import DIR/CLASS/*.wav")
    build.add_argument("--user-manifest", metavar="JSONL", help="also import a JSONL manifest of (path, captions)")
    pack = actions.add_parser("pack", help="pack part of the training split as Ogg Opus, small enough to "
                                           "send to a machine that cannot build the corpus")
    pack.add_argument("--root", default=DEFAULT_ROOT, help=f"corpus folder (default: {DEFAULT_ROOT})")
    pack.add_argument("--out", required=True, help="folder for the packed corpus")
    pack.add_argument("--max-mb", type=float, default=48.0, help="size of the packed audio, MB (default 48)")
    pack.add_argument("--seconds-per-file", type=float, default=60.0,
                      help="longest cut of one source (default 60)")
    pack.add_argument("--seed", type=int, default=0)
    captions = actions.add_parser("captions", help="write the embeddings of a corpus's captions beside it, so "
                                                   "that training there needs no text encoder")
    captions.add_argument("--root", default=DEFAULT_ROOT, help=f"corpus folder (default: {DEFAULT_ROOT})")
    return data


def run(arguments: argparse.Namespace) -> int:
    from samstream.models.data import validation
    from samstream.models.data.build import BuildError, build

    if arguments.data_command in ("pack", "captions"):
        from samstream.models.caption_embeddings import embed_corpus_captions

        corpus = arguments.root
        if arguments.data_command == "pack":
            from samstream.models.data.pack import pack_corpus

            pack_corpus(arguments.root, arguments.out, arguments.max_mb, arguments.seconds_per_file,
                        seed=arguments.seed)
            corpus = arguments.out  # a packed corpus carries its caption embeddings
        print(f"wrote {embed_corpus_captions(corpus)}")
        return 0
    if arguments.data_command != "build":
        raise BuildError(f"unknown data action {arguments.data_command!r}")
    if arguments.validation_only and arguments.no_validation:
        raise BuildError("--validation-only and --no-validation contradict each other")
    root = arguments.root
    if not arguments.validation_only:
        build(root, families=arguments.only, jobs=arguments.jobs, scale=arguments.scale,
              allow_install=not arguments.no_install, user_folder=arguments.user_folder,
              user_manifest=arguments.user_manifest, seed=arguments.seed,
              progress=not arguments.no_progress)
    if not arguments.no_validation:
        result = validation.build_validation(root, progress=not arguments.no_progress)
        print(f"validation set: {result['mixtures']} mixtures, sha256 {result['sha256']}")
        committed = validation.committed_hash()
        if arguments.update_hash:
            validation.write_committed_hash(result["sha256"])
            print(f"wrote {validation.HASH_FILE}")
        elif committed and committed != result["sha256"]:
            print(f"note: differs from the committed hash {committed} (different package versions or "
                  f"options?); --update-hash records the new one")
        elif committed:
            print("matches the committed hash")
    return 0
