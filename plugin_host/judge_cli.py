"""`samstream judge train` and `samstream judge eval`: the reference-free judge."""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

DEFAULT_SETS = "runs/judge"
FINE_TUNE_LEARNING_RATE = 3e-4
# The separations' seeds: the held-out set's, and the offset of a consistency set's from --seed
# (so that its mixtures do not repeat the band sets').
HELD_OUT_SEPARATION_SEED = 1
CONSISTENCY_SEED_OFFSET = 104729
MIXTURE_STYLES = ("varied", "protocol", "calibration")
# The first mixture id of a consistency set, per style; + 10,000 per --seed.
CONSISTENCY_FIRST_ID = {"varied": 2_000_000, "protocol": 3_000_000, "calibration": 4_000_000}


def register(commands) -> None:
    judge = commands.add_parser("judge", help="the reference-free judge: train it, or measure it")
    actions = judge.add_subparsers(dest="judge_command", metavar="ACTION", parser_class=type(judge))
    actions.required = True
    train = actions.add_parser("train", help="separate corpus mixtures many ways, then fit the judge to the true "
                                             "SI-SDR; reports Spearman on held-out validation mixtures")
    evaluate = actions.add_parser("eval", help="Spearman of a judge with the true SI-SDR on held-out mixtures")
    tagger = actions.add_parser("tagger", help="fit the judge's tagger: which classes a window's band levels "
                                               "sound like (a second opinion beside the separator's)")
    tagger.add_argument("--data", default="data/corpus", help="corpus from `samstream data build`")
    tagger.add_argument("--mixtures", type=int, default=20000,
                        help="training-split mixtures, each giving its target, interferers and mixture (default "
                             "20000; about 35 ms each to draw)")
    tagger.add_argument("--validation-mixtures", type=int, default=1000,
                        help="validation-split mixtures whose targets measure it (default 1000)")
    tagger.add_argument("--epochs", type=int, default=6)
    tagger.add_argument("--width", type=int, default=64, help="channels of its convolutions (default 64)")
    tagger.add_argument("--seed", type=int, default=11, help="the mixtures drawn, and the fit unless --fit-seed")
    tagger.add_argument("--fit-seed", type=int, help="the fit's initial weights and batches (default: --seed)")
    tagger.add_argument("--sets", default=DEFAULT_SETS,
                        help=f"folder where drawn mixtures are kept and found again, per split, count and seed "
                             f"(default {DEFAULT_SETS})")
    tagger.add_argument("--clean", action="store_true",
                        help="fit on the clean targets, interferers and mixtures, as the taggers before; by "
                             "default it fits on targets with some of the interferers leaked in and interferers "
                             "with some of the target, each class labelled by its share of the power, since the "
                             "judge shows it estimates and what they left")
    tagger.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes drawing the mixtures (default: one per core; the set is the same for any)")
    tagger.add_argument("--out", required=True, help="folder to write (tagger.json, tagger.safetensors)")
    for action in (train, evaluate):
        action.add_argument("--data", default="data/corpus", help="corpus from `samstream data build`")
        action.add_argument("--model", help="separation model whose outputs are judged (default: the bundled one)")
        action.add_argument("--sets", default=DEFAULT_SETS,
                            help=f"folder caching the judged separations (default {DEFAULT_SETS})")
        action.add_argument("--held-out", type=int, default=3, help="validation mixtures per class (default 3)")
        action.add_argument("--early", action="append", default=[], metavar="CHECKPOINT",
                            help="an earlier checkpoint folder whose (worse) outputs are judged too; repeatable")
    train.add_argument("--mixtures", type=int, default=240, help="training mixtures separated every way (default 240)")
    train.add_argument("--mask-mixtures", type=int, default=1200,
                       help="more training mixtures with the oracle-mask estimates only (no network runs; default "
                            "1200): many mixtures teach how loud each kind of target is in a mixture")
    train.add_argument("--extra-set", action="append", default=[], metavar="NPZ",
                       help="another cached set of judged separations to train on too (repeatable); a set with "
                            "consistency features joins the fusion's set, another the band network's")
    train.add_argument("--consistency-mixtures", type=int, default=100,
                       help="training mixtures separated every way whose estimates are also re-separated by the "
                            "model, to fit the fusion of the band network with those consistency features "
                            "(default 100; 0: a band-level judge alone)")
    train.add_argument("--consistency-style", choices=MIXTURE_STYLES, default="varied",
                       help="how those mixtures are made: varied (default; 1-2 interferers, EQ, rooms, targets "
                            "that come and go), protocol (the benchmark's: one interferer, dry) or calibration "
                            "(the benchmark's, from validation-split sources of groups that no --held-out "
                            "mixture uses: sources the separator never trained on)")
    train.add_argument("--without-posterior", action="store_true",
                       help="fuse only the re-separation features of the estimate and its remainder, not the "
                            "model's posterior of the mixture (one re-separation fewer per window) nor the "
                            "estimate's mask features")
    train.add_argument("--without-mask", action="store_true",
                       help="fuse the re-separation and posterior features, not the estimate's mask features")
    train.add_argument("--base", metavar="JUDGE",
                       help="a trained band-level judge folder to fuse with the consistency features, instead of "
                            "training its band network again")
    train.add_argument("--fine-tune-epochs", type=int, default=0,
                       help="after the fusion, epochs in which the band network learns beside it on the "
                            "re-separated mixtures, at a tenth of the learning rate (default 0: measured, it overfits)")
    train.add_argument("--tagger", metavar="FOLDER", action="append", default=[],
                       help="a tagger from `samstream judge tagger`: its contrast for the prompt between what "
                            "the estimate kept and what it left joins the fusion's scalars (frozen); given "
                            "several times, the taggers' contrasts are averaged into that one scalar")
    train.add_argument("--fusion-members", type=int, default=1,
                       help="fusion networks fitted from consecutive seeds, their scores averaged (default 1)")
    train.add_argument("--global-ranking-weight", type=float, default=0.0,
                       help="weight of a ranking loss over every pair of estimates in a batch, of any windows, "
                            "beside the one within each window (default 0)")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--learning-rate", type=float, default=2e-3,
                       help="peak learning rate of the one-cycle schedule (default 2e-3)")
    train.add_argument("--out", help="judge folder to write (default: the bundled model's judge/)")
    train.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--judge", help="judge folder (default: the bundled model's judge/)")


def judge_mixtures(data: str, split: str, count: int, seed: int, style: str = "varied", held_out: int = 0):
    """Training mixtures from the corpus's training split, or the validation set's (``per_class`` each).
    ``style`` of the training mixtures: "varied" (1-2 interferers, EQ, rooms, targets that come and go,
    as a live input), "protocol" (the benchmark's: one interferer, dry, the target throughout), or
    "calibration" (the benchmark's, from validation-split sources of groups that no mixture of the
    validation set's first ``held_out`` per class uses: sources the separator never trained on,
    as a live input's are, and that the held-out windows do not share)."""
    from dataclasses import replace

    from samstream.models.data.manifest import read_corpus_manifest
    from samstream.models.data.mixtures import PROTOCOL, MixtureConfig, MixtureSampler
    from samstream.models.data.validation import float_items
    from samstream.models.judge_train import JudgeMixture

    entries = read_corpus_manifest(data)
    if split == "validation":
        for meta, mixture, target in float_items(entries, data, per_class=count):
            yield JudgeMixture(mixture, target, meta["caption"], meta["target_class"], meta["interferer_class"])
        return
    if style not in MIXTURE_STYLES:
        raise ValueError(f"mixture style {style!r}: one of {', '.join(MIXTURE_STYLES)}")
    if style == "calibration":
        entries, config = calibration_entries(entries, data, held_out), PROTOCOL
    else:
        config = MixtureConfig(seconds=PROTOCOL.seconds, interferers=(1, 2)) if style == "varied" else \
            replace(PROTOCOL, split="train")
    sampler = MixtureSampler(entries, data, config, seed=seed)
    for index in range(count):
        mix = sampler.sample(index)
        yield JudgeMixture(mix.mixture, mix.target, mix.caption, mix.target_class, mix.interferer_classes[0])


def calibration_entries(entries: list, data: str, held_out: int) -> list:
    """The validation split's entries whose (class, group) no mixture of the validation set's first
    ``held_out`` per class draws from. A group is one kit, voice, instrument program or recording:
    the corpus splits by group, so sources of one group sound alike."""
    from samstream.models.data.validation import items

    if held_out < 1:
        raise ValueError("calibration mixtures need the held-out set's size (--held-out), to leave its "
                         "sources out")
    group_of = {entry.path: (entry.cls, entry.group) for entry in entries}
    used = {group_of[source["path"]] for meta, _, _ in items(entries, data, per_class=held_out)
            for source in meta["sources"]}
    return [entry for entry in entries if entry.split == "val" and (entry.cls, entry.group) not in used]


def cached_set(path: Path, make, log=print):
    from samstream.models.judge_train import JudgeSet

    if path.is_file():
        log(f"judged separations from {path}")
        return JudgeSet.load(path)
    log(f"separating mixtures for {path.name} ...")
    result = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result


def separations_model_dir(arguments) -> Path:
    from samstream.models.separate import DEFAULT_MODEL_DIR

    return Path(arguments.model) if arguments.model else DEFAULT_MODEL_DIR


def separations_for(arguments, encoder, seed: int, consistency: bool = False):
    from samstream.models.data.captions import CLASSES
    from samstream.models.judge_train import Separations

    return Separations(separations_model_dir(arguments), encoder, sorted(CLASSES),
                       [Path(folder) for folder in arguments.early], seed=seed, consistency=consistency)


def held_out_set(arguments, encoder, consistency: bool = False):
    from samstream.models.config import JudgeConfig
    from samstream.models.judge_train import build_judge_set

    name = f"held_out_consistency_{arguments.held_out}" if consistency else f"held_out_{arguments.held_out}"
    return cached_set(Path(arguments.sets) / f"{name}.npz", lambda: build_judge_set(
        judge_mixtures(arguments.data, "validation", arguments.held_out, 0),
        separations_for(arguments, encoder, HELD_OUT_SEPARATION_SEED, consistency), JudgeConfig(), first_id=1_000_000))


def consistency_set_name(count: int, seed: int, style: str = "varied", held_out: int = 0) -> str:
    """The cached consistency set's file name, without ``.npz``; a calibration set's names the
    held-out set whose sources it leaves out."""
    if style == "varied":
        return f"consistency_{count}_{seed}"
    if style == "calibration":
        return f"consistency_calibration_h{held_out}_{count}_{seed}"
    return f"consistency_{style}_{count}_{seed}"


def consistency_set(arguments, encoder):
    """Training mixtures (another seed than the band sets', so they do not repeat them) separated
    every way, each window's estimate re-separated for the consistency features."""
    from samstream.models.config import JudgeConfig
    from samstream.models.judge_train import build_judge_set

    seed = arguments.seed + CONSISTENCY_SEED_OFFSET
    count, style = arguments.consistency_mixtures, arguments.consistency_style
    name = consistency_set_name(count, arguments.seed, style, arguments.held_out)
    return cached_set(Path(arguments.sets) / f"{name}.npz", lambda: build_judge_set(
        judge_mixtures(arguments.data, "train", count, seed, style, arguments.held_out),
        separations_for(arguments, encoder, seed, True),
        JudgeConfig(), first_id=CONSISTENCY_FIRST_ID[style] + 10_000 * arguments.seed))


def mask_only_set(arguments, encoder, config):
    from samstream.models.judge_train import build_judge_set

    # Another seed than the fully separated mixtures', so the two sets do not repeat each other.
    seed = arguments.seed + 7919
    return build_judge_set(judge_mixtures(arguments.data, "train", arguments.mask_mixtures, seed),
                           separations_for(arguments, encoder, seed), config, first_id=500_000, with_model=False)


def calibration_held_out(path: Path) -> int | None:
    """The held-out size whose sources a cached calibration set leaves out (from its name), or None
    for a set of training-split mixtures."""
    match = re.fullmatch(r"consistency_calibration_h(\d+)_\d+_\d+\.npz", Path(path).name)
    return int(match.group(1)) if match else None


def calibrated_sources_guard(arguments) -> int | None:
    """The smallest held-out size left out by any calibration set this training reads; refuses a set
    that left out fewer held-out mixtures than ``--held-out`` names, whose sources the held-out
    windows would share."""
    sizes = []
    for path in arguments.extra_set:
        size = calibration_held_out(Path(path))
        if size is not None and size < arguments.held_out:
            raise ValueError(f"--extra-set {path}: its sources leave out the first {size} validation mixtures per "
                             f"class only, and --held-out {arguments.held_out} shares sources with it")
        if size is not None:
            sizes.append(size)
    if arguments.consistency_mixtures and arguments.consistency_style == "calibration":
        sizes.append(arguments.held_out)
    return min(sizes) if sizes else None


def check_held_out_unseen(folder: Path, held_out: int) -> None:
    """Refuses to measure a judge on held-out mixtures whose sources its calibration sets drew from."""
    record = folder / "training.json"
    left_out = json.loads(record.read_text()).get("calibration_leaves_out_held_out") if record.is_file() else None
    if left_out is not None and held_out > left_out:
        raise ValueError(f"{folder}: calibrated on validation sources the first {left_out} mixtures per class leave "
                         f"unused; --held-out {held_out} would measure it on sources it trained on")


def extra_sets(arguments) -> tuple[list, list]:
    """The ``--extra-set`` files, each read once: (those without consistency features, those with)."""
    from samstream.models.judge_train import JudgeSet

    band, consistency = [], []
    for path in arguments.extra_set:
        if not Path(path).is_file():
            raise ValueError(f"--extra-set {path}: no such file")
        data = JudgeSet.load(Path(path))
        (consistency if data.consistency.shape[1] > 0 else band).append(data)
    return band, consistency


def train_band_judge(arguments, encoder, held_out, extra_band_sets: list):
    """The band network on the fully separated and the mask-only training mixtures."""
    from samstream.models.config import JudgeConfig
    from samstream.models.judge_train import JudgeSet, build_judge_set, evaluate_judge, predict, train_judge

    config = JudgeConfig()
    train_set = cached_set(Path(arguments.sets) / f"train_{arguments.mixtures}_{arguments.seed}.npz",
                           lambda: build_judge_set(judge_mixtures(arguments.data, "train", arguments.mixtures,
                                                                  arguments.seed),
                                                   separations_for(arguments, encoder, arguments.seed), config))
    if arguments.mask_mixtures:
        mask_set = cached_set(Path(arguments.sets) / f"masks_{arguments.mask_mixtures}_{arguments.seed}.npz",
                              lambda: mask_only_set(arguments, encoder, config))
        train_set = JudgeSet.join([train_set, mask_set])
    train_set = JudgeSet.join([train_set, *extra_band_sets])
    print(f"training the band network on {len(train_set.score_db)} windows")
    model = train_judge(train_set, config, epochs=arguments.epochs, seed=arguments.seed,
                        learning_rate=arguments.learning_rate)
    figures = {"train": evaluate_judge(predict(model, train_set), train_set, interval=False),
               "training_mixtures": arguments.mixtures, "mask_only_mixtures": arguments.mask_mixtures,
               "extra_sets": [Path(path).name for path in arguments.extra_set]}
    if not arguments.consistency_mixtures:
        figures["band_held_out"] = evaluate_judge(predict(model, held_out), held_out)
    return model, figures


def fit_tagger(arguments, encoder) -> int:
    """`samstream judge tagger`: draw the mixtures, fit the tagger, write it with its figures."""
    from dataclasses import replace

    from samstream.models.config import JudgeConfig
    from samstream.models.tagger import (
        cached_examples,
        class_embeddings,
        corpus_classes,
        save_tagger,
        tagger_examples,
        target_accuracy,
        train_tagger,
        use_every_core,
    )

    if min(arguments.mixtures, arguments.epochs, arguments.width, arguments.jobs) < 1:
        raise ValueError("--mixtures, --epochs, --width and --jobs must be at least 1")
    use_every_core()
    classes = corpus_classes(arguments.data)
    config = replace(JudgeConfig(), tagger_width=arguments.width, tagger_classes=len(classes))

    def examples(split: str, count: int):
        def draw():
            print(f"drawing {count} {split} mixtures ...")
            return tagger_examples(arguments.data, split, count, arguments.seed, classes, config,
                                   workers=arguments.jobs)
        return cached_examples(Path(arguments.sets) / f"tagger_{split}_{count}_{arguments.seed}.npz", classes, draw)

    train = examples("train", arguments.mixtures)
    validation = examples("val", arguments.validation_mixtures) if arguments.validation_mixtures else None
    fit_seed = arguments.seed if arguments.fit_seed is None else arguments.fit_seed
    model = train_tagger(train, config, class_embeddings(encoder, classes), epochs=arguments.epochs,
                         seed=fit_seed, validation=validation, leaky=not arguments.clean)
    figures = {"classes": classes, "mixtures": arguments.mixtures, "epochs": arguments.epochs,
               "seed": arguments.seed, "fit_seed": fit_seed, "leaky": not arguments.clean}
    if validation is not None:
        figures |= {"validation_mixtures": arguments.validation_mixtures,
                    "validation_targets_tagged_right": round(target_accuracy(model, validation), 4)}
    save_tagger(model, Path(arguments.out), {"training": figures})
    print(f"tagger written to {arguments.out}" + (f": validation targets tagged right "
          f"{figures['validation_targets_tagged_right']:.1%}" if validation is not None else ""))
    return 0


def run(arguments: argparse.Namespace) -> int:
    import numpy as np

    from samstream.models.checkpoint import count_parameters
    from samstream.models.judge import CONSISTENCY_NAMES, DEFAULT_JUDGE_DIR, WITH_MASK, WITH_POSTERIOR
    from samstream.models.judge_net import ensemble_of, load_judge, save_judge, with_fusion, with_tagger
    from samstream.models.judge_train import (
        JudgeSet,
        evaluate_judge,
        frozen_scores,
        predict,
        train_judge,
        use_one_thread,
    )
    from samstream.models.tagger import load_tagger
    from samstream.models.text_encoder import TextEncoder

    use_one_thread()
    if arguments.judge_command == "tagger":
        return fit_tagger(arguments, TextEncoder.load())
    if arguments.judge_command == "train" and arguments.fusion_members < 1:
        raise ValueError(f"--fusion-members {arguments.fusion_members}: at least 1")
    for folder in arguments.early:
        if not (Path(folder) / "config.json").is_file():
            raise ValueError(f"--early {folder}: no config.json there (a checkpoint folder is needed)")
    encoder = TextEncoder.load()
    if arguments.judge_command == "eval":
        folder = Path(arguments.judge) if arguments.judge else DEFAULT_JUDGE_DIR
        check_held_out_unseen(folder, arguments.held_out)
        model = load_judge(folder)
        held_out = held_out_set(arguments, encoder, bool(model.config.consistency_features))
        figures = evaluate_judge(predict(model, held_out), held_out)
        print(json.dumps(figures, indent=2))
        return 0
    fusing = arguments.consistency_mixtures > 0
    calibration_left_out = calibrated_sources_guard(arguments)
    held_out = held_out_set(arguments, encoder, fusing)
    extra_band_sets, extra_consistency_sets = extra_sets(arguments)
    if arguments.base:
        model = load_judge(Path(arguments.base))
        figures = {"band_network": f"from {arguments.base}"}
    else:
        model, figures = train_band_judge(arguments, encoder, held_out, extra_band_sets)
    if arguments.tagger:
        taggers = [load_tagger(Path(folder), model.config) for folder in arguments.tagger]
        model = with_tagger(model, taggers)
        figures["taggers"] = [{"folder": folder} | tagger.record
                              for folder, tagger in zip(arguments.tagger, taggers, strict=True)]
    if fusing:
        fusion_set = JudgeSet.join([consistency_set(arguments, encoder), *extra_consistency_sets])
        fusion_mixtures = len(np.unique(fusion_set.mixture_id))
        print(f"fusing with the consistency features on {len(fusion_set.score_db)} windows of "
              f"{fusion_mixtures} mixtures")
        names = CONSISTENCY_NAMES if arguments.without_posterior else \
            WITH_POSTERIOR if arguments.without_mask else WITH_MASK
        frozen = frozen_scores(model, fusion_set)  # the same for every fusion member
        model = ensemble_of([train_judge(fusion_set, model.config, epochs=arguments.epochs,
                                         seed=arguments.seed + member, learning_rate=arguments.learning_rate,
                                         model=with_fusion(model, len(names)),
                                         global_ranking_weight=arguments.global_ranking_weight, frozen=frozen)
                             for member in range(arguments.fusion_members)])
        if arguments.fine_tune_epochs:
            print(f"fine-tuning the band network beside the fusion, {arguments.fine_tune_epochs} epochs")
            model = train_judge(fusion_set, model.config, epochs=arguments.fine_tune_epochs,
                                learning_rate=FINE_TUNE_LEARNING_RATE, seed=arguments.seed, model=model, whole=True)
        figures |= {"fusion_train": evaluate_judge(predict(model, fusion_set), fusion_set, interval=False),
                    "consistency_mixtures": fusion_mixtures, "fusion_members": arguments.fusion_members,
                    "global_ranking_weight": arguments.global_ranking_weight,
                    "fine_tune_epochs": arguments.fine_tune_epochs}
    figures |= {"held_out": evaluate_judge(predict(model, held_out), held_out),
                "held_out_per_class": arguments.held_out, "epochs": arguments.epochs,
                "learning_rate": arguments.learning_rate,
                "early_checkpoints": [Path(folder).name for folder in arguments.early],
                "parameters": count_parameters(model)}
    if calibration_left_out is not None:
        figures["calibration_leaves_out_held_out"] = calibration_left_out
    out = Path(arguments.out) if arguments.out else DEFAULT_JUDGE_DIR
    # A fused judge keeps the separator its consistency features were measured with.
    save_judge(model, out, figures, reseparator=separations_model_dir(arguments) if fusing else None)
    held = figures["held_out"]
    low, high = held["spearman_95_over_mixtures"]
    print(f"judge written to {out}: held-out Spearman {held['spearman']:+.3f} over {held['examples']} windows "
          f"(95 % over mixtures {low:+.3f} to {high:+.3f}), "
          f"{held['spearman_model_outputs']:+.3f} over the model's own outputs, "
          f"pairs ordered right {held['model_pair_agreement']:.1%}")
    return 0
