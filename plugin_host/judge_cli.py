"""`samstream judge train` and `samstream judge eval`: the reference-free judge."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_SETS = "runs/judge"
FINE_TUNE_LEARNING_RATE = 3e-4
# The separations' seeds: the held-out set's, and the offset of a consistency set's from --seed
# (so that its mixtures do not repeat the band sets').
HELD_OUT_SEPARATION_SEED = 1
CONSISTENCY_SEED_OFFSET = 104729
MIXTURE_STYLES = ("varied", "protocol")
# The first mixture id of a consistency set, per style; + 10,000 per --seed.
CONSISTENCY_FIRST_ID = {"varied": 2_000_000, "protocol": 3_000_000}


def register(commands) -> None:
    judge = commands.add_parser("judge", help="the reference-free judge: train it, or measure it")
    actions = judge.add_subparsers(dest="judge_command", metavar="ACTION", parser_class=type(judge))
    actions.required = True
    train = actions.add_parser("train", help="separate corpus mixtures many ways, then fit the judge to the true "
                                             "SI-SDR; reports Spearman on held-out validation mixtures")
    evaluate = actions.add_parser("eval", help="Spearman of a judge with the true SI-SDR on held-out mixtures")
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
                            "that come and go) or protocol (the benchmark's: one interferer, dry)")
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


def judge_mixtures(data: str, split: str, count: int, seed: int, style: str = "varied"):
    """Training mixtures from the corpus's training split, or the validation set's (``per_class`` each).
    ``style`` of the training mixtures: "varied" (1-2 interferers, EQ, rooms, targets that come and go,
    as a live input), or "protocol" (the benchmark's: one interferer, dry, the target throughout)."""
    from dataclasses import replace

    from samstream.models.data.manifest import read_manifest
    from samstream.models.data.mixtures import PROTOCOL, MixtureConfig, MixtureSampler
    from samstream.models.data.validation import float_items
    from samstream.models.judge_train import JudgeMixture

    manifest = Path(data) / "manifest.jsonl"
    if not manifest.is_file():
        raise ValueError(f"{manifest}: missing; build the corpus first with `samstream data build`")
    entries = read_manifest(str(manifest))
    if split == "validation":
        for meta, mixture, target in float_items(entries, data, per_class=count):
            yield JudgeMixture(mixture, target, meta["caption"], meta["target_class"], meta["interferer_class"])
        return
    if style not in MIXTURE_STYLES:
        raise ValueError(f"mixture style {style!r}: one of {', '.join(MIXTURE_STYLES)}")
    config = MixtureConfig(seconds=PROTOCOL.seconds, interferers=(1, 2)) if style == "varied" else \
        replace(PROTOCOL, split="train")
    sampler = MixtureSampler(entries, data, config, seed=seed)
    for index in range(count):
        mix = sampler.sample(index)
        yield JudgeMixture(mix.mixture, mix.target, mix.caption, mix.target_class, mix.interferer_classes[0])


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


def consistency_set_name(count: int, seed: int, style: str = "varied") -> str:
    """The cached consistency set's file name, without ``.npz``."""
    return f"consistency_{count}_{seed}" if style == "varied" else f"consistency_{style}_{count}_{seed}"


def consistency_set(arguments, encoder):
    """Training mixtures (another seed than the band sets', so they do not repeat them) separated
    every way, each window's estimate re-separated for the consistency features."""
    from samstream.models.config import JudgeConfig
    from samstream.models.judge_train import build_judge_set

    seed = arguments.seed + CONSISTENCY_SEED_OFFSET
    count, style = arguments.consistency_mixtures, arguments.consistency_style
    name = consistency_set_name(count, arguments.seed, style)
    return cached_set(Path(arguments.sets) / f"{name}.npz", lambda: build_judge_set(
        judge_mixtures(arguments.data, "train", count, seed, style), separations_for(arguments, encoder, seed, True),
        JudgeConfig(), first_id=CONSISTENCY_FIRST_ID[style] + 10_000 * arguments.seed))


def mask_only_set(arguments, encoder, config):
    from samstream.models.judge_train import build_judge_set

    # Another seed than the fully separated mixtures', so the two sets do not repeat each other.
    seed = arguments.seed + 7919
    return build_judge_set(judge_mixtures(arguments.data, "train", arguments.mask_mixtures, seed),
                           separations_for(arguments, encoder, seed), config, first_id=500_000, with_model=False)


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
    figures = {"train": evaluate_judge(predict(model, train_set), train_set),
               "training_mixtures": arguments.mixtures, "mask_only_mixtures": arguments.mask_mixtures,
               "extra_sets": [Path(path).name for path in arguments.extra_set]}
    if not arguments.consistency_mixtures:
        figures["band_held_out"] = evaluate_judge(predict(model, held_out), held_out)
    return model, figures


def run(arguments: argparse.Namespace) -> int:
    import numpy as np

    from samstream.models.checkpoint import count_parameters
    from samstream.models.judge import CONSISTENCY_NAMES, DEFAULT_JUDGE_DIR, WITH_MASK, WITH_POSTERIOR
    from samstream.models.judge_net import ensemble_of, load_judge, save_judge, with_fusion
    from samstream.models.judge_train import JudgeSet, evaluate_judge, predict, train_judge, use_one_thread
    from samstream.models.text_encoder import TextEncoder

    use_one_thread()
    if arguments.judge_command == "train" and arguments.fusion_members < 1:
        raise ValueError(f"--fusion-members {arguments.fusion_members}: at least 1")
    for folder in arguments.early:
        if not (Path(folder) / "config.json").is_file():
            raise ValueError(f"--early {folder}: no config.json there (a checkpoint folder is needed)")
    encoder = TextEncoder.load()
    if arguments.judge_command == "eval":
        folder = Path(arguments.judge) if arguments.judge else DEFAULT_JUDGE_DIR
        model = load_judge(folder)
        held_out = held_out_set(arguments, encoder, bool(model.config.consistency_features))
        figures = evaluate_judge(predict(model, held_out), held_out)
        print(json.dumps(figures, indent=2))
        return 0
    fusing = arguments.consistency_mixtures > 0
    held_out = held_out_set(arguments, encoder, fusing)
    extra_band_sets, extra_consistency_sets = extra_sets(arguments)
    if arguments.base:
        model = load_judge(Path(arguments.base))
        figures = {"band_network": f"from {arguments.base}"}
    else:
        model, figures = train_band_judge(arguments, encoder, held_out, extra_band_sets)
    if fusing:
        fusion_set = JudgeSet.join([consistency_set(arguments, encoder), *extra_consistency_sets])
        fusion_mixtures = len(np.unique(fusion_set.mixture_id))
        print(f"fusing with the consistency features on {len(fusion_set.score_db)} windows of "
              f"{fusion_mixtures} mixtures")
        names = CONSISTENCY_NAMES if arguments.without_posterior else \
            WITH_POSTERIOR if arguments.without_mask else WITH_MASK
        model = ensemble_of([train_judge(fusion_set, model.config, epochs=arguments.epochs,
                                         seed=arguments.seed + member, learning_rate=arguments.learning_rate,
                                         model=with_fusion(model, len(names)),
                                         global_ranking_weight=arguments.global_ranking_weight)
                             for member in range(arguments.fusion_members)])
        if arguments.fine_tune_epochs:
            print(f"fine-tuning the band network beside the fusion, {arguments.fine_tune_epochs} epochs")
            model = train_judge(fusion_set, model.config, epochs=arguments.fine_tune_epochs,
                                learning_rate=FINE_TUNE_LEARNING_RATE, seed=arguments.seed, model=model, whole=True)
        figures |= {"fusion_train": evaluate_judge(predict(model, fusion_set), fusion_set),
                    "consistency_mixtures": fusion_mixtures, "fusion_members": arguments.fusion_members,
                    "global_ranking_weight": arguments.global_ranking_weight,
                    "fine_tune_epochs": arguments.fine_tune_epochs}
    figures |= {"held_out": evaluate_judge(predict(model, held_out), held_out),
                "held_out_per_class": arguments.held_out, "epochs": arguments.epochs,
                "learning_rate": arguments.learning_rate,
                "early_checkpoints": [Path(folder).name for folder in arguments.early],
                "parameters": count_parameters(model)}
    out = Path(arguments.out) if arguments.out else DEFAULT_JUDGE_DIR
    # A fused judge keeps the separator its consistency features were measured with.
    save_judge(model, out, figures, reseparator=separations_model_dir(arguments) if fusing else None)
    held = figures["held_out"]
    print(f"judge written to {out}: held-out Spearman {held['spearman']:+.3f} over {held['examples']} windows, "
          f"{held['spearman_model_outputs']:+.3f} over the model's own outputs, "
          f"pairs ordered right {held['model_pair_agreement']:.1%}")
    return 0
