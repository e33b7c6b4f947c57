"""`samstream train` and `samstream export`: the training half behind the command line.

torch is imported only inside these commands, never by the serving path.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from samstream.models.config import MODEL_PRESETS, PRECISIONS

PRESETS = tuple(MODEL_PRESETS)


def register(commands) -> None:
    train = commands.add_parser("train", help="train the separation model on the corpus")
    train.add_argument("--data", default="data/corpus", help="corpus root from `samstream data build`")
    train.add_argument("--run", default="runs/default", help="run folder: checkpoint, log.csv, resume state")
    train.add_argument("--preset", choices=PRESETS, default="default", help="model size")
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    train.add_argument("--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    train.add_argument("--seconds", type=float, help="seconds of audio per training example")
    train.add_argument("--validate-every", dest="validate_every", type=int)
    train.add_argument("--save-every", dest="save_every", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    train.add_argument("--validation", type=int, default=24, help="validation mixtures used while training")
    train.add_argument("--grow-from", dest="grow_from", metavar="CHECKPOINT",
                       help="start a new run from this checkpoint's weights (the preset may add a detail head)")
    train.add_argument("--visual-share", dest="visual_share", type=float,
                       help="share of examples that carry a drawn clip's visual prompt (trains the visual gate)")
    train.add_argument("--distortion-weight", dest="distortion_weight", type=float,
                       help="weight of the one-step estimate's error in dB (SDR) beside the flow loss")
    train.add_argument("--zero-time-share", dest="zero_time_share", type=float,
                       help="share of each batch trained at t = 0, the one-step sampler's estimate (default 0.5)")
    train.add_argument("--hard-pairs", dest="hard_pairs", type=float,
                       help="share of the interferer draw weighed by how badly the model separates each pair")
    train.add_argument("--level-range", dest="level_db", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="mixture RMS drawn per training example, dBFS (default -32 -12)")
    train.add_argument("--speed-share", dest="speed_share", type=float,
                       help="share of sources played faster or slower (pitch and tempo together, "
                            "within 3 semitones); default 0")
    train.add_argument("--speed-families", dest="speed_families", metavar="FAMILY,...",
                       type=lambda text: tuple(name.strip() for name in text.split(",") if name.strip()),
                       help="only sources of these corpus families change speed (e.g. effect,music); default all")
    train.add_argument("--device", help="cpu (default) or cuda; under torchrun each rank takes its LOCAL_RANK's GPU")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="bfloat16 runs the network under autocast (a GPU, or a CPU with AVX512-BF16 or AMX: "
                            "1.65x the steps on the 2-core development machine); weights stay float32")
    train.add_argument("--workers", type=int,
                       help="processes drawing batches beside the loop (default 0: in the loop, exact resume)")
    train.add_argument("--minutes", type=float,
                       help="a wall-clock budget: the schedule ends at it, or at --steps, whichever comes first")
    train.add_argument("--no-progress", action="store_true")

    distill = commands.add_parser("distill", help="distil the multi-step teacher into a 1- or 2-step student")
    distill.add_argument("--teacher", default="runs/default/checkpoint", help="the teacher's checkpoint folder")
    distill.add_argument("--data", default="data/corpus", help="corpus root from `samstream data build`")
    distill.add_argument("--run", default="runs/student", help="folder for the student's checkpoint")
    distill.add_argument("--student-steps", dest="student_steps", type=int, choices=(1, 2), default=1)
    distill.add_argument("--steps", type=int, default=2000, help="distillation updates")
    distill.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    distill.add_argument("--learning-rate", dest="learning_rate", type=float, default=1e-4)
    distill.add_argument("--seconds", type=float, default=2.0)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--validation", type=int, default=24)
    distill.add_argument("--no-progress", action="store_true")

    average = commands.add_parser("average", help="average the weights of one run's checkpoints into a new one")
    average.add_argument("checkpoints", nargs="+", help="checkpoint folders (config.json + model.safetensors)")
    average.add_argument("--out", required=True, help="folder for the averaged checkpoint")

    export = commands.add_parser("export", help="export a checkpoint to ONNX for serving")
    export.add_argument("--checkpoint", default="runs/default/checkpoint", help="config.json + model.safetensors")
    export.add_argument("--out", default="models/default", help="serving folder to write")
    export.add_argument("--steps", type=int, nargs="+", default=[1, 2], help="flow steps per hop graph")
    export.add_argument("--text-encoder", action="store_true", help="export the text prompt encoder instead")
    export.add_argument("--if-stale", action="store_true", help="only when the graphs are missing or older")


def preset_config(name: str):
    return MODEL_PRESETS[name]


def validation_examples(entries, root: str, count: int, sampler):
    from samstream.models.data.validation import float_items

    examples = []
    if count <= 0:
        return examples
    if not any(entry.split == "val" for entry in entries):  # a packed corpus holds training sources only
        print(f"{root}: no validation split; training without the periodic validation figure")
        return examples
    for meta, mixture, target in float_items(entries, root, per_class=1):
        if len(examples) >= count:
            break
        examples.append(sampler.fixed_example(mixture, target, meta["caption"]))
    return examples


def corpus_prompts(data: str, config, settings, validation_count: int):
    """The corpus behind a prompt sampler, and validation examples by the benchmark protocol."""
    from samstream.models.data import HOP
    from samstream.models.data.manifest import read_corpus_manifest
    from samstream.models.data.mixtures import MixtureConfig, MixtureSampler
    from samstream.models.prompts import CorpusSource, PromptSampler

    entries = read_corpus_manifest(data)
    level_db = tuple(settings.level_db)
    if not -120.0 <= level_db[0] <= level_db[1] <= 0.0:
        raise ValueError(f"--level-range must be LOW HIGH with -120 <= LOW <= HIGH <= 0 dBFS, got {level_db}")
    speed_share = getattr(settings, "speed_share", 0.0)
    if not 0.0 <= speed_share <= 1.0:
        raise ValueError(f"--speed-share must be within 0..1, got {speed_share}")
    speed_families = tuple(getattr(settings, "speed_families", ()))
    corpus_families = {entry.family for entry in entries}
    unknown = sorted(set(speed_families) - corpus_families)
    if unknown:
        raise ValueError(f"--speed-families names {', '.join(unknown)}, not a family of {data} "
                         f"(it has {', '.join(sorted(corpus_families))})")
    corpus = MixtureSampler(entries, data, MixtureConfig(seconds=max(settings.seconds, 3.0), level_db=level_db,
                                                         speed_share=speed_share, speed_families=speed_families),
                            seed=settings.seed)
    if getattr(settings, "hard_pairs", 0.0):
        from samstream.models.data.hard_pairs import PairDifficulty

        corpus.pair_difficulty = PairDifficulty(corpus.classes, mining_share=settings.hard_pairs)
    sampler = PromptSampler(CorpusSource(corpus, config, HOP), config, caption_encoder(data),
                            visual_share=getattr(settings, "visual_share", 0.0))
    validation = validation_examples(entries, data, validation_count, sampler)
    if getattr(settings, "workers", 0):  # embedded before the workers fork, so that they never run the encoder
        sampler.embed_captions(caption for captions in corpus.captions.values() for caption in captions)
    return sampler, validation


def caption_encoder(data: str):
    """The corpus's stored caption embeddings where it has them (a packed corpus does), else the text encoder."""
    from samstream.models import caption_embeddings

    stored = caption_embeddings.corpus_file(data)
    if os.path.exists(stored):
        table = caption_embeddings.CaptionEmbeddings.load(stored)
        print(f"caption embeddings: {len(table.table)} from {stored} ({table.encoder_id})")
        return table
    from samstream.models.text_encoder import TextEncoder

    return TextEncoder.load().encode


def run_train(arguments: argparse.Namespace) -> int:
    from dataclasses import replace

    from samstream.models.train import Trainer, settings_from

    config = preset_config(arguments.preset)
    settings = settings_from(arguments)
    if not 0.0 <= settings.visual_share <= 1.0:
        raise ValueError(f"--visual-share must lie in [0, 1], got {settings.visual_share}")
    if settings.visual_share:
        config = replace(config, prompt=replace(config.prompt, visual_trained=True))
    sampler, validation = corpus_prompts(arguments.data, config, settings, arguments.validation)
    grow = Path(arguments.grow_from) if arguments.grow_from else None
    trainer = Trainer(config, settings, Path(arguments.run), sampler, validation, grow=grow)
    figures = trainer.run(progress=not arguments.no_progress)
    print(f"trained to step {trainer.step}; checkpoint in {Path(arguments.run) / 'checkpoint'}; {figures}")
    return 0


def run_distill(arguments: argparse.Namespace) -> int:
    from samstream.models.checkpoint import load_config
    from samstream.models.distill import distill
    from samstream.models.train import settings_from

    config = load_config(Path(arguments.teacher))
    settings = settings_from(arguments)
    sampler, validation = corpus_prompts(arguments.data, config, settings, arguments.validation)
    report = distill(Path(arguments.teacher), Path(arguments.run), arguments.student_steps, settings, sampler,
                     validation, progress=not arguments.no_progress)
    for name, figures in report.items():
        print(f"{name:>12}: SI-SDRi extract {figures['si_sdri_extract']:+.2f} dB, "
              f"remove {figures['si_sdri_remove']:+.2f} dB")
    return 0


def run_average(arguments: argparse.Namespace) -> int:
    from samstream.models.checkpoint import average_checkpoints

    path = average_checkpoints([Path(folder) for folder in arguments.checkpoints], Path(arguments.out))
    print(f"wrote {path} (the mean of {len(arguments.checkpoints)} checkpoints)")
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    if arguments.text_encoder:
        from samstream.models.text_export import main as export_text

        return export_text(["--out", arguments.out])
    from samstream.models.export import export_model_dir, serving_is_current

    if arguments.if_stale and serving_is_current(Path(arguments.checkpoint), Path(arguments.out), arguments.steps):
        print(f"{arguments.out}: serving graphs are up to date")
        return 0
    for steps in arguments.steps:
        if steps < 1:
            raise ValueError(f"--steps must be at least 1, got {steps}")
        path = export_model_dir(Path(arguments.checkpoint), Path(arguments.out), steps)
        print(f"wrote {path}")
    return 0
