"""The reference-free judge, serving half (numpy and ONNX Runtime, no torch).

It answers "how good is this separation?" without the reference: from the mixture, the
estimate of the target and the text prompt it predicts the SI-SDR of the estimate in dB.
It drives ``/sam/confidence`` on the live bridge and re-ranks candidates offline
(``samstream separate --candidates K``).

What it sees, frame by frame (``judge_features``): ERB band levels of the mixture, and how
much of each band the estimate kept and left behind, all relative to the mixture, so that
the input level does not matter. The network (``judge_net.py``) pools those over a window
of a few seconds and conditions on the prompt, because "is this a good estimate?" depends
on what was asked for.

Band levels alone cannot tell how loud the target was in the mixture, which is most of an
SI-SDR. So the judge also asks the separation model twice (``consistency_features``): given
the estimate, how much of it does the model throw away (interference the estimate kept), and
given the remainder, how much of it does the model keep (target the estimate missed)? A
good estimate survives its own re-separation and leaves nothing of the target behind. A
third re-separation, of the mixture, gives the model's posterior of the target
(``MixturePosterior``): how unsure the model is of the window, and how far the estimate lies
from the model's own answer. Last, from the mixture and the estimate alone, how the estimate's
mask behaves below a band (``mask_features``): how decided it is, how much fine detail it
follows, how much it moves. The judge fuses those scalars with the band network's score.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from samstream.kernels.bands import make_band_state
from samstream.kernels.stft import analysis_window

from .config import JudgeConfig

DEFAULT_JUDGE_DIR = Path(__file__).resolve().parent / "default" / "judge"
JUDGE_GRAPH = "judge.onnx"
RELATIVE_FLOOR_DB = -60.0  # band powers are floored this far below the mixture's mean power
LEVEL_RANGE_DB = (-80.0, 20.0)
RATIO_RANGE_DB = (-60.0, 20.0)
FEATURE_SCALE_DB = 20.0
CONFIDENCE_SCALE_DB = 5.0  # 0 dB predicted SI-SDR reads 0.5, +10 dB 0.88, -10 dB 0.12
CONSISTENCY_NAMES = ("kept", "survives", "self_sdr", "missed", "combined", "target_ratio")
# From one more re-separation, of the window's mixture (``MixturePosterior``); a judge with
# len(WITH_POSTERIOR) consistency features takes them after the others.
POSTERIOR_NAMES = ("posterior_sdr", "uncertainty", "distance", "expected_target")
WITH_POSTERIOR = CONSISTENCY_NAMES + POSTERIOR_NAMES
# From the mixture and the estimate alone (``mask_features``, no re-separation), taken after the
# posterior's: a judge with len(WITH_MASK) consistency features takes all three groups.
MASK_NAMES = ("indecision", "band_indecision", "fine_detail", "time_flux", "frequency_flux", "decided_kept",
              "decided_dropped", "loud_kept", "quiet_kept")
WITH_MASK = WITH_POSTERIOR + MASK_NAMES
FEATURE_COUNTS = (len(CONSISTENCY_NAMES), len(WITH_POSTERIOR), len(WITH_MASK))
CONSISTENCY_FLOOR_DB = -60.0  # energies are floored this far below the mixture's
# The separation model's masks depend on the input level (measured: a clean speech estimate
# keeps 2.3 dB more of itself at -20 dBFS than at -40 dBFS), so the mixture window and what is
# made of it are brought to the validation protocol's level before they are re-separated.
RESEPARATION_LEVEL_DBFS = -24.0


class JudgeFolderError(ValueError):
    """A judge folder that cannot be used; the message names the file."""


def band_weights(config: JudgeConfig) -> np.ndarray:
    """(n_bins, n_bands): the triangular ERB weights of ``kernels.bands``, each band normalised."""
    state = make_band_state(config.sample_rate, config.n_fft, config.n_bands, scale="erb")
    bins = np.arange(len(state.lower_band))
    weights = np.zeros((len(bins), config.n_bands))
    weights[bins, state.lower_band] = 1.0 - state.frac
    inner = state.lower_band < config.n_bands - 1
    weights[bins[inner], state.lower_band[inner] + 1] = state.frac[inner]
    return (weights * state.inv_weight_sum[None]).astype(np.float32)


def window_spectra(signals: np.ndarray, config: JudgeConfig) -> np.ndarray:
    """(channels, n) -> (channels, frames, bins) complex: the stream's STFT framing (frame i ends
    at sample (i + 1) * hop, zeros before the start), computed in one batch: the judge runs beside
    the audio worker, and a per-frame loop would hold the interpreter lock ten times longer."""
    n_fft, hop = config.n_fft, config.hop
    channels, length = signals.shape
    frames = max(1, -(-length // hop))
    padded = np.zeros((channels, n_fft - hop + frames * hop), np.float32)
    padded[:, n_fft - hop:n_fft - hop + length] = signals
    framed = sliding_window_view(padded, n_fft, axis=1)[:, ::hop][:, :frames]
    return np.fft.rfft(framed * analysis_window(n_fft, np.float32), axis=-1)


def band_powers(signals: np.ndarray, config: JudgeConfig, weights: np.ndarray) -> np.ndarray:
    """(channels, n) -> (channels, frames, n_bands)."""
    spectra = window_spectra(signals, config)
    return (spectra.real ** 2 + spectra.imag ** 2).astype(np.float32) @ weights


def judge_features(mixture: np.ndarray, estimate: np.ndarray, config: JudgeConfig,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """(n,) mixture and (n,) target estimate -> (frames, 3 * n_bands) float32.

    Per frame and band: the mixture's level relative to its own mean, the estimate's level
    relative to the mixture's, and the remainder's (mixture - estimate) relative to the mixture's.
    """
    weights = band_weights(config) if weights is None else weights
    mixture = np.asarray(mixture, np.float32)
    estimate = np.asarray(estimate, np.float32)
    if mixture.shape != estimate.shape or mixture.ndim != 1:
        raise ValueError(f"judge_features needs two (n,) signals of one length, got {mixture.shape} and "
                         f"{estimate.shape}")
    powers = band_powers(np.stack((mixture, estimate, mixture - estimate)), config, weights)
    floor = max(float(powers[0].mean()), 1e-12) * 10.0 ** (RELATIVE_FLOOR_DB / 10.0)
    levels = 10.0 * np.log10(powers + floor)
    reference = 10.0 * np.log10(max(float(powers[0].mean()), 1e-12) + floor)
    mixture_level = np.clip(levels[0] - reference, *LEVEL_RANGE_DB)
    kept = np.clip(levels[1] - levels[0], *RATIO_RANGE_DB)
    left = np.clip(levels[2] - levels[0], *RATIO_RANGE_DB)
    return (np.concatenate((mixture_level, kept, left), axis=1) / FEATURE_SCALE_DB).astype(np.float32)


class Reseparator:
    """The separation model's one-step offline path on short signals, its session kept for reuse.

    Every signal is run at one length, ``length`` samples (a shorter one behind leading
    silence), and the session runs once on construction: ONNX Runtime then sizes its memory
    once, before a stream starts, instead of growing it for each new window length."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1, length: int = 144000):
        from .runtime import load_serving_config
        from .separate import DEFAULT_MODEL_DIR, sequence_session

        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        # Each window is brought to RESEPARATION_LEVEL_DBFS as a whole before it is re-separated, as
        # the judge was trained; the model's own sliding level gain would move that within a window.
        config = load_serving_config(self.model_dir)[0]
        self.config = replace(config, input_level=replace(config.input_level, enabled=False))
        self.session = sequence_session(self.model_dir, 1, threads=threads)
        if self.config.stft.sample_rate != 48000:
            raise ValueError(f"{self.model_dir}: the judge re-separates at 48 kHz, the model runs at "
                             f"{self.config.stft.sample_rate} Hz")
        self.length = length
        self._padded = np.zeros((1, length), np.float32)
        # Twice: ONNX Runtime plans its memory pattern on the first run and claims it on the second.
        for _ in range(2):
            self.target(np.zeros(length, np.float32), np.zeros(self.config.prompt.text_dim, np.float32))

    def target(self, signal: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        """(n,) with n <= ``length`` -> the model's target for the prompt, (n,)."""
        from .runtime import Prompt
        from .separate import offline_target

        count = len(signal)
        if count > self.length:
            raise ValueError(f"the re-separator takes at most {self.length} samples, got {count}")
        self._padded[0, :self.length - count] = 0.0
        self._padded[0, self.length - count:] = signal
        prompt = Prompt(text_embedding=np.asarray(text_embedding, np.float32))
        return offline_target(self.config, self.session, self._padded, prompt, seed=0)[0, self.length - count:]


def reseparation_gain(mixture: np.ndarray) -> float:
    """The gain that brings a window's mixture to ``RESEPARATION_LEVEL_DBFS``."""
    level = float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64))))
    return 10.0 ** (RESEPARATION_LEVEL_DBFS / 20.0) / max(level, 1e-9)


def decibel_features(ratios) -> np.ndarray:
    """Energy ratios -> dB in units of ``FEATURE_SCALE_DB``, clipped to +-``CONSISTENCY_FLOOR_DB``."""
    decibels = np.clip(10.0 * np.log10(np.maximum(np.array(ratios, np.float64), 1e-30)), CONSISTENCY_FLOOR_DB,
                       -CONSISTENCY_FLOOR_DB)
    return (decibels / FEATURE_SCALE_DB).astype(np.float32)


@dataclass(frozen=True)
class MixturePosterior:
    """What the separation model believes about one window's target, from one re-separation of
    the mixture, in the judge's STFT and at ``RESEPARATION_LEVEL_DBFS``.

    The one-step model is trained towards the conditional mean m of the target's mask. Where the
    true mask is near 0 or 1 per bin, a calibrated mean leaves an expected squared error of
    |X|^2 m (1 - m): summed, ``uncertainty`` is the error the model expects of itself, with no
    reference. For any estimate E, sum |E - mX|^2 + uncertainty is its expected error and
    sum |X|^2 m the target's expected energy, so their ratio predicts E's SDR. Measured on held-out
    windows (benchmarks/probe_judge_posterior.py), that ratio alone orders two of the model's
    outputs of one window right 90.6 % of the time (most such pairs hold the one-step output,
    the posterior mean itself), where the band and re-separation features reach 60.4 %. It
    cannot tell an estimate better than the model's own, so it joins them, not replaces them.
    """

    config: JudgeConfig  # whose STFT the spectra are in
    model_spectrum: np.ndarray  # (frames, bins) complex: the model's target, m X
    mixture_energy: float
    expected_target: float  # sum |X|^2 m
    uncertainty: float  # sum |X|^2 m (1 - m)


def mixture_posterior(mixture: np.ndarray, text_embedding: np.ndarray, reseparator: Reseparator,
                      config: JudgeConfig) -> MixturePosterior:
    """(n,) mixture of one window -> the model's posterior of its target (one re-separation)."""
    mixture = np.asarray(mixture, np.float32) * np.float32(reseparation_gain(mixture))
    target = reseparator.target(mixture, text_embedding)
    spectra = window_spectra(np.stack((mixture, target)), config)
    power = spectra[0].real ** 2 + spectra[0].imag ** 2
    mask = np.clip(np.abs(spectra[1]) / (np.sqrt(power) + 1e-9), 0.0, 1.0)
    return MixturePosterior(config, spectra[1], float(power.sum()), float((power * mask).sum()),
                            float((power * mask * (1.0 - mask)).sum()))


def posterior_features(posterior: MixturePosterior, estimate: np.ndarray) -> np.ndarray:
    """An estimate at the posterior's level -> (len(POSTERIOR_NAMES),) float32 in units of 20 dB:
    its predicted SDR; then the model's uncertainty, the estimate's distance from the model's
    target and that target's expected energy, each relative to the mixture's energy."""
    spectrum = window_spectra(np.asarray(estimate, np.float32)[None], posterior.config)[0]
    difference = spectrum - posterior.model_spectrum
    distance = float((difference.real ** 2 + difference.imag ** 2).sum())
    floor = max(posterior.mixture_energy, 1e-12) * 10.0 ** (CONSISTENCY_FLOOR_DB / 10.0)
    total = posterior.mixture_energy + floor
    return decibel_features(((posterior.expected_target + floor) / (distance + posterior.uncertainty + floor),
                             (posterior.uncertainty + floor) / total, (distance + floor) / total,
                             (posterior.expected_target + floor) / total))


def consistency_features(mixture: np.ndarray, estimate: np.ndarray, text_embedding: np.ndarray,
                         reseparator: Reseparator, posterior: MixturePosterior | None = None) -> np.ndarray:
    """(n,) mixture and estimate -> (len(CONSISTENCY_NAMES),) float32, in units of 20 dB; given the
    window's ``posterior`` (``mixture_posterior`` of this mixture), (len(WITH_POSTERIOR),).

    With e the estimate, r = mixture - e the remainder, a = model(e) and b = model(r), both
    asked for the prompt: kept E(e)/E(mix); survives E(a)/E(e); self_sdr E(a)/E(e - a), the
    interference the model finds in e; missed E(b)/E(e), the target it finds in r; combined
    E(a)/(E(e - a) + E(b)); target_ratio E(a + b)/E(mix - a - b), the model's guess at how loud
    the target is in the mixture. Level-free: the window is re-separated at
    ``RESEPARATION_LEVEL_DBFS``.
    """
    gain = reseparation_gain(mixture)
    mixture = np.asarray(mixture, np.float64) * gain
    estimate = np.asarray(estimate, np.float64) * gain
    kept_by_model = reseparator.target(estimate, text_embedding).astype(np.float64)
    missed_by_estimate = reseparator.target(mixture - estimate, text_embedding).astype(np.float64)
    floor = max(float(np.sum(mixture ** 2)), 1e-12) * 10.0 ** (CONSISTENCY_FLOOR_DB / 10.0)

    def energy(signal: np.ndarray) -> float:
        return float(np.sum(signal ** 2)) + floor

    found_target = kept_by_model + missed_by_estimate
    estimate_energy, kept_energy, missed_energy = energy(estimate), energy(kept_by_model), energy(missed_by_estimate)
    thrown_away = energy(estimate - kept_by_model)
    ratios = (estimate_energy / energy(mixture), kept_energy / estimate_energy, kept_energy / thrown_away,
              missed_energy / estimate_energy, kept_energy / (thrown_away + missed_energy),
              energy(found_target) / energy(mixture - found_target))
    features = decibel_features(ratios)
    if posterior is None:
        return features
    return np.concatenate((features, posterior_features(posterior, estimate)))


def bin_mask(mixture: np.ndarray, estimate: np.ndarray, config: JudgeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(n,) mixture and estimate -> the mixture's power per bin (frames, bins), float64, and the
    estimate's mask |E| / |X| per bin, clipped to 0..1."""
    spectra = window_spectra(np.stack((np.asarray(mixture, np.float32), np.asarray(estimate, np.float32))), config)
    power = (spectra[0].real ** 2 + spectra[0].imag ** 2).astype(np.float64)
    return power, np.clip(np.abs(spectra[1]) / (np.sqrt(power) + 1e-9), 0.0, 1.0)


def mask_features(mixture: np.ndarray, estimate: np.ndarray, config: JudgeConfig, weights: np.ndarray) -> np.ndarray:
    """(n,) mixture and estimate -> (len(MASK_NAMES),) float32: the estimate's mask, bin by bin.

    With m = |E| / |X| per bin (clipped to 0..1) and each bin weighed by its share of the mixture's
    energy: indecision, the mean of m (1 - m); band_indecision, the same of the mask over ERB
    bands; fine_detail, how far m departs from its band's mean; time_flux and frequency_flux, how
    much m moves from frame to frame and from bin to bin (those five in units of 20 dB); then the
    shares of the energy whose mask is above 0.9 and below 0.1, and the mean m over the loudest
    bins that hold half the energy and over the quietest that hold the last tenth.

    Why: sources are sparse in time and frequency, so the ideal mask is decided and detailed, while
    a separator that is unsure hedges with a soft, smooth mask and a many-step sample flickers;
    the band and re-separation features cannot see below a band."""
    power, mask = bin_mask(mixture, estimate, config)
    total = max(float(power.sum()), 1e-12)
    share = power / total
    weights = weights.astype(np.float64)  # a float32 operand would send the products down numpy's slow path
    band_power = power @ weights
    band_mask = ((power * mask) @ weights) / (band_power + 1e-12)
    smooth = (band_mask @ weights.T) / (weights.sum(axis=1)[None] + 1e-12)
    flat, descending = mask.ravel(), np.sort(power.ravel())[::-1]
    cumulative = np.cumsum(descending) / total
    loud_count, quiet_from = int(np.count_nonzero(cumulative < 0.5)), int(np.count_nonzero(cumulative < 0.9))
    # Bins by level rather than by rank: the same sets but for ties, which real audio does not have.
    loud = power.ravel() >= descending[max(loud_count - 1, 0)]
    quiet = power.ravel() <= descending[quiet_from] if quiet_from < len(descending) else np.zeros(len(flat), bool)
    spread = decibel_features((
        (share * mask * (1.0 - mask)).sum(),
        (band_power / total * band_mask * (1.0 - band_mask)).sum(),
        (share * (mask - smooth) ** 2).sum(),
        (0.5 * (share[1:] + share[:-1]) * np.abs(np.diff(mask, axis=0))).sum(),
        (0.5 * (share[:, 1:] + share[:, :-1]) * np.abs(np.diff(mask, axis=1))).sum()))
    decided = ((share * (mask > 0.9)).sum(), (share * (mask < 0.1)).sum(), flat[loud].mean(),
               flat[quiet].mean() if quiet.any() else 0.0)
    return np.concatenate((spread, np.array(decided, np.float32)))


def judged_scalars(mixture: np.ndarray, estimate: np.ndarray, text_embedding: np.ndarray, reseparator: Reseparator,
                   posterior: MixturePosterior, weights: np.ndarray) -> np.ndarray:
    """One window's every scalar feature, (len(WITH_MASK),): the re-separation features of the
    estimate, the posterior's and the mask's, in that order."""
    return np.concatenate((consistency_features(mixture, estimate, text_embedding, reseparator, posterior),
                           mask_features(mixture, estimate, posterior.config, weights)))


def window_starts(length: int, config: JudgeConfig) -> list[int]:
    """Where the judged windows of a signal start: whole windows, half overlapping, the last flush
    with the end; one shorter window when the signal is shorter than a window."""
    size = config.window_samples
    if length <= size:
        return [0]
    step = size // 2
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def window_slices(length: int, config: JudgeConfig) -> list[slice]:
    """The judged windows of a signal of ``length`` samples (``window_starts``), as slices."""
    return [slice(start, min(start + config.window_samples, length)) for start in window_starts(length, config)]


def confidence_of(score_db: float) -> float:
    """A predicted SI-SDR in dB -> 0..1 for a meter."""
    return float(1.0 / (1.0 + np.exp(-score_db / CONFIDENCE_SCALE_DB)))


@dataclass(frozen=True)
class Judgement:
    score_db: float  # predicted SI-SDR of the estimate, mean over the windows
    window_scores_db: tuple[float, ...]
    confidence: float  # the score on a 0..1 scale (``confidence_of``)
    # The separator's posterior alone: the estimate's predicted SDR (``MixturePosterior``), mean over
    # the windows; None for a judge without the posterior features.
    posterior_sdr_db: float | None = None


class Judge:
    """The exported judge on ONNX Runtime; one instance per thread that calls it."""

    def __init__(self, folder: Path | None = None, threads: int = 1, reseparator: Reseparator | None = None):
        """``reseparator``: the separation model that a judge with consistency features asks
        (default: the bundled model, the one such a judge was trained with)."""
        import onnxruntime

        self.folder = Path(folder) if folder is not None else DEFAULT_JUDGE_DIR
        config_path, graph = self.folder / "config.json", self.folder / JUDGE_GRAPH
        for path in (config_path, graph):
            if not path.is_file():
                raise JudgeFolderError(f"{path}: missing (train one with `samstream judge train`)")
        try:
            self.config = JudgeConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as error:
            raise JudgeFolderError(f"{config_path}: not a judge config ({error})") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for a corrupt graph
            raise JudgeFolderError(f"{graph}: not a usable ONNX graph ({str(error).splitlines()[0]})") from None
        self.weights = band_weights(self.config)
        self.reseparator = None
        if self.config.consistency_features:
            if self.config.consistency_features not in FEATURE_COUNTS:
                raise JudgeFolderError(f"{config_path}: {self.config.consistency_features} consistency features, "
                                       f"this version computes {' or '.join(map(str, FEATURE_COUNTS))}")
            self.reseparator = reseparator or Reseparator(self.reseparator_folder(), threads=threads,
                                                          length=self.config.window_samples)

    def reseparator_folder(self) -> Path | None:
        """The separation model this judge's consistency features ask; None: the bundled one."""
        if not self.config.reseparator:
            return None
        folder = self.folder / self.config.reseparator
        if not (folder / "serving.json").is_file():
            raise JudgeFolderError(f"{folder}: the judge's re-separation model is not exported (run `samstream "
                                   f"export --checkpoint {folder} --out {folder} --steps 1`, as set-up does)")
        return folder

    @property
    def uses_posterior(self) -> bool:
        return self.config.consistency_features >= len(WITH_POSTERIOR)

    @property
    def uses_mask(self) -> bool:
        return self.config.consistency_features == len(WITH_MASK)

    def consistency(self, mixture: np.ndarray, estimate: np.ndarray, text_embedding: np.ndarray,
                    posterior: MixturePosterior | None = None) -> np.ndarray:
        """One window's consistency features, as this judge was trained on them; ``posterior``: the
        window's, from ``posteriors``, when it is known already."""
        if self.uses_posterior and posterior is None:
            posterior = mixture_posterior(mixture, text_embedding, self.reseparator, self.config)
        if self.uses_mask:
            return judged_scalars(mixture, estimate, text_embedding, self.reseparator, posterior, self.weights)
        return consistency_features(mixture, estimate, text_embedding, self.reseparator,
                                    posterior if self.uses_posterior else None)

    def posteriors(self, mixture: np.ndarray, text_embedding: np.ndarray) -> tuple[MixturePosterior, ...] | None:
        """The separator's posterior of each judged window of ``mixture`` (None for a judge without
        them). They depend on the mixture and the prompt alone, so one set serves every estimate of
        that mixture: ``judge(..., posteriors=)`` then re-separates two times a window, not three."""
        if not self.uses_posterior:
            return None
        return tuple(mixture_posterior(mixture[window], text_embedding, self.reseparator, self.config)
                     for window in window_slices(len(mixture), self.config))

    def score_features(self, features: np.ndarray, text_embedding: np.ndarray,
                       consistency: np.ndarray | None = None) -> float:
        """(frames, feature_dim), (text_dim,)[, (consistency_features,)] -> predicted SI-SDR in dB."""
        feeds = {"features": np.ascontiguousarray(features[None], np.float32),
                 "text": np.ascontiguousarray(np.asarray(text_embedding, np.float32)[None])}
        if self.config.consistency_features:
            feeds["consistency"] = np.ascontiguousarray(np.asarray(consistency, np.float32)[None])
        return float(self.session.run(None, feeds)[0][0])

    def judge(self, mixture: np.ndarray, estimate: np.ndarray, text_embedding: np.ndarray,
              posteriors: tuple[MixturePosterior, ...] | None = None) -> Judgement:
        """(n,) mixture and target estimate at the judge's rate -> the judgement over its windows.
        ``posteriors``: ``self.posteriors(mixture, text_embedding)``, when several estimates of one
        mixture are judged."""
        windows = window_slices(len(mixture), self.config)
        if posteriors is not None and len(posteriors) != len(windows):
            raise ValueError(f"{len(posteriors)} posteriors for {len(windows)} windows: they are of another mixture")
        scores, posterior_scores = [], []
        for number, window in enumerate(windows):
            features = judge_features(mixture[window], estimate[window], self.config, self.weights)
            consistency = None if self.reseparator is None else self.consistency(
                mixture[window], estimate[window], text_embedding, None if posteriors is None else posteriors[number])
            scores.append(self.score_features(features, text_embedding, consistency))
            if self.uses_posterior:
                posterior_scores.append(FEATURE_SCALE_DB * float(consistency[len(CONSISTENCY_NAMES)]))
        score = float(np.mean(scores))
        return Judgement(score, tuple(scores), confidence_of(score),
                         float(np.mean(posterior_scores)) if posterior_scores else None)


@dataclass(frozen=True)
class RankedSeparation:
    best: object  # the ``Separation`` the judge scored highest
    seeds: tuple[int, ...]
    scores_db: tuple[float, ...]  # the judge's score of each seed's separation, in seed order

    @property
    def best_seed(self) -> int:
        return self.seeds[int(np.argmax(self.scores_db))]


def separate_best_of(audio: np.ndarray, sample_rate: int, text_embedding: np.ndarray, candidates: int,
                     judge: Judge, first_seed: int = 0, **options) -> RankedSeparation:
    """Separate with ``candidates`` noise seeds and keep the one the judge scores highest
    (SAM Audio re-ranks its samples the same way). ``options`` go to ``separate``."""
    from .separate import change_rate, separate

    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    if text_embedding is None:
        raise ValueError("re-ranking candidates needs a text prompt: the judge scores against what was asked for")
    rate = judge.config.sample_rate
    mixture = change_rate(np.nan_to_num(np.asarray(audio, np.float32)).mean(axis=0, keepdims=True), sample_rate,
                          rate)[0]
    posteriors = judge.posteriors(mixture, text_embedding)
    best, best_score, seeds, scores = None, -np.inf, [], []
    for seed in range(first_seed, first_seed + candidates):
        separation = separate(audio, sample_rate, text_embedding, seed=seed, **options)
        estimate = change_rate(separation.target.mean(axis=0, keepdims=True), sample_rate, rate)[0]
        score = judge.judge(mixture, estimate, text_embedding, posteriors).score_db
        seeds.append(seed)
        scores.append(score)
        if score > best_score:
            best, best_score = separation, score
    return RankedSeparation(best, tuple(seeds), tuple(scores))
