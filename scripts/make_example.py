#!/usr/bin/env python3
"""Render samstream's bundled example: speech over mains hum.

Writes, deterministically from a fixed seed:

    examples/speech_hum.flac                  the mixture (48 kHz, mono, 16-bit FLAC)
    examples/speech_hum.sources/speech.flac   the target reference (speech)
    examples/speech_hum.sources/hum.flac      the interferer reference (mains hum + hiss)
    examples/speech_hum.json                  seed, levels, ratio, text, prompts

The mixture equals speech + hum sample for sample, also after 16-bit quantisation
(both sources are quantised first and the mixture is their integer sum), so SI-SDR
against the references is exact.

Needs espeak-ng on PATH (Debian: apt-get install espeak-ng) and numpy, scipy and
soundfile. Usage:

    python scripts/make_example.py [--seed N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

SR = 48_000
DURATION_S = 6.0
ESPEAK_SR = 22_050
DEFAULT_SEED = 20261101
NAME = "speech_hum"

# Two utterances, two voices and speeds: a sound check as a live engineer hears it.
UTTERANCES = (
    {"text": "Check one, two. Can you hear me at the back?", "voice": "en-us+f3", "speed": 165, "pitch": 55},
    {"text": "There's a hum in the monitors tonight.", "voice": "en-gb+m3", "speed": 175, "pitch": 40},
)
LEAD_S = 0.40          # silence before the first utterance
GAP_S = 0.35           # pause between utterances
MAINS_HZ = 50.0
# Harmonic amplitudes relative to the fundamental (k = 1..8): a ground-loop buzz with
# a strong 50 Hz, a rectifier-heavy 100/150 Hz and a decaying tail, audible on small speakers.
HUM_HARMONICS = (1.0, 0.55, 0.45, 0.22, 0.18, 0.10, 0.07, 0.04)
HISS_BELOW_HUM_DB = 22.0   # pink noise + a little white hiss, this far below the hum (RMS)
TIR_DB = 3.0               # target (speech) to interferer (hum + hiss), whole-clip energy
PEAK_DBFS = -3.0           # mixture peak after normalisation
EDGE_FADE_S = 0.02         # raised-cosine fade at both clip edges (interferer), so loops don't click
PROMPTS = {
    "speech": ["speech", "a person speaking", "voice", "talking"],
    "hum": ["mains hum", "electrical hum", "ground loop buzz", "hum and hiss"],
}


class RenderError(Exception):
    """A failure that ends the script with one line on stderr."""


def _imports():
    try:
        import numpy as np
        import soundfile as sf
        from scipy.signal import resample_poly
    except ImportError as exc:  # pragma: no cover - environment problem
        raise RenderError(f"missing Python package: {exc.name} (needs numpy, scipy, soundfile)") from None
    return np, sf, resample_poly


def espeak_version(espeak: str) -> str:
    out = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=False)
    line = out.stdout.strip().splitlines()
    return line[0].split("  Data at:")[0].strip() if line else "unknown"


def render_utterance(espeak: str, utt: dict, tmpdir: str):
    np, sf, resample_poly = _imports()
    path = os.path.join(tmpdir, "utt.wav")
    cmd = [espeak, "-v", utt["voice"], "-s", str(utt["speed"]), "-p", str(utt["pitch"]),
           "-w", path, utt["text"]]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0 or not os.path.exists(path):
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise RenderError(f"espeak-ng failed for voice {utt['voice']}: {msg[-1] if msg else res.returncode}")
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = x[:, 0]
    if sr != ESPEAK_SR:
        raise RenderError(f"espeak-ng wrote {sr} Hz, expected {ESPEAK_SR} Hz")
    # Trim leading/trailing silence (espeak pads both ends), keep 10 ms either side.
    active = np.flatnonzero(np.abs(x) > 1e-3 * np.max(np.abs(x)))
    if active.size == 0:
        raise RenderError(f"espeak-ng rendered silence for voice {utt['voice']}")
    pad = int(0.01 * sr)
    x = x[max(active[0] - pad, 0): active[-1] + pad + 1]
    # 22050 -> 48000 Hz: 48000/22050 = 320/147.
    y = resample_poly(x, 320, 147)
    return y


def pink_noise(np, rng, n: int):
    """Pink (1/f power) noise by spectral shaping of white Gaussian noise, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    shape = np.zeros_like(f)
    band = f >= 20.0
    shape[band] = 1.0 / np.sqrt(f[band])
    x = np.fft.irfft(spec * shape, n)
    return x / np.sqrt(np.mean(x ** 2))


def render(seed: int, espeak: str):
    np, _, _ = _imports()
    rng = np.random.default_rng(seed)
    n = round(DURATION_S * SR)
    t = np.arange(n) / SR

    # Speech: utterances placed one after the other on a silent 6 s track.
    speech = np.zeros(n)
    placements = []
    pos = int(LEAD_S * SR)
    with tempfile.TemporaryDirectory(prefix="samstream_example_") as tmp:
        for i, utt in enumerate(UTTERANCES):
            y = render_utterance(espeak, utt, tmp)
            y = y / np.max(np.abs(y))
            if pos + y.size > n - int(0.1 * SR):
                raise RenderError(
                    f"utterance {i + 1} does not fit in {DURATION_S:g} s; shorten the text or speed it up")
            speech[pos:pos + y.size] += y
            placements.append({**utt, "start_s": round(pos / SR, 4), "end_s": round((pos + y.size) / SR, 4)})
            pos += y.size + int(GAP_S * SR)

    # Mains hum: 50 Hz and harmonics, random fixed phases, a slow +-0.7 dB wobble.
    phases = rng.uniform(0.0, 2.0 * np.pi, len(HUM_HARMONICS))
    hum = np.zeros(n)
    for k, (amp, ph) in enumerate(zip(HUM_HARMONICS, phases, strict=False), start=1):
        hum += amp * np.sin(2.0 * np.pi * MAINS_HZ * k * t + ph)
    wobble_hz = rng.uniform(0.2, 0.4)
    wobble_ph = rng.uniform(0.0, 2.0 * np.pi)
    hum *= 10.0 ** (0.7 / 20.0 * np.sin(2.0 * np.pi * wobble_hz * t + wobble_ph))
    hum_rms = np.sqrt(np.mean(hum ** 2))

    # Hiss: pink noise plus a quieter white component (the console's noise floor).
    noise = pink_noise(np, rng, n) + 0.5 * rng.standard_normal(n)
    noise *= hum_rms * 10.0 ** (-HISS_BELOW_HUM_DB / 20.0) / np.sqrt(np.mean(noise ** 2))
    interferer = hum + noise

    fade = int(EDGE_FADE_S * SR)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    interferer[:fade] *= ramp
    interferer[-fade:] *= ramp[::-1]

    # Set the target-to-interferer ratio (whole-clip energy), then one common gain.
    e_s = np.sum(speech ** 2)
    e_i = np.sum(interferer ** 2)
    interferer *= np.sqrt(e_s / e_i * 10.0 ** (-TIR_DB / 10.0))
    mix = speech + interferer
    gain = 10.0 ** (PEAK_DBFS / 20.0) / np.max(np.abs(mix))
    speech *= gain
    interferer *= gain

    # Quantise each source to the 16-bit grid; the mixture is their exact integer sum.
    s16 = np.round(speech * 32768.0).astype(np.int32)
    i16 = np.round(interferer * 32768.0).astype(np.int32)
    m16 = s16 + i16
    if np.max(np.abs(m16)) > 32767 or np.max(np.abs(s16)) > 32767 or np.max(np.abs(i16)) > 32767:
        raise RenderError("internal error: 16-bit overflow after normalisation")
    return s16.astype(np.int16), i16.astype(np.int16), m16.astype(np.int16), placements, {
        "hum_phases_rad": [round(float(p), 6) for p in phases],
        "hum_wobble_hz": round(float(wobble_hz), 6),
        "gain_db": round(float(20.0 * np.log10(gain)), 3),
    }


def levels(np, x16):
    x = x16.astype(np.float64) / 32768.0
    peak = float(np.max(np.abs(x)))
    rms = float(np.sqrt(np.mean(x ** 2)))
    db = lambda v: round(20.0 * np.log10(v), 2) if v > 0 else None  # noqa: E731
    return {"peak_dbfs": db(peak), "rms_dbfs": db(rms)}


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Render samstream's example mixture (speech over mains hum).")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(here), "examples"),
                    help="output folder (default: the repository's examples/)")
    args = ap.parse_args(argv)

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RenderError("espeak-ng not found: apt-get install espeak-ng")
    np, sf, _ = _imports()

    s16, i16, m16, placements, extra = render(args.seed, espeak)

    # Write into a temporary folder next to the output, then move into place:
    # no half-written example on failure.
    os.makedirs(args.out, exist_ok=True)
    src_dir = os.path.join(args.out, f"{NAME}.sources")
    stage = tempfile.mkdtemp(prefix=f".{NAME}_", dir=args.out)
    try:
        os.makedirs(os.path.join(stage, "sources"))
        files = {
            os.path.join(stage, f"{NAME}.flac"): m16,
            os.path.join(stage, "sources", "speech.flac"): s16,
            os.path.join(stage, "sources", "hum.flac"): i16,
        }
        for path, data in files.items():
            sf.write(path, data, SR, format="FLAC", subtype="PCM_16")
        # Read back: the decoded mixture must be the sum of the decoded sources, exactly.
        back = {p: sf.read(p, dtype="int16")[0].astype(np.int32) for p in files}
        m, s, i = (back[p] for p in files)
        if not np.array_equal(m, s + i):
            raise RenderError("internal error: decoded mixture != speech + hum")

        s_f, i_f = s.astype(np.float64), i.astype(np.float64)
        meta = {
            "name": NAME,
            "generator": "scripts/make_example.py",
            "seed": args.seed,
            "sample_rate": SR,
            "channels": 1,
            "duration_s": DURATION_S,
            "format": "FLAC, 16-bit PCM",
            "mixture": f"{NAME}.flac",
            "sources": {"speech": f"{NAME}.sources/speech.flac", "hum": f"{NAME}.sources/hum.flac"},
            "mixture_is_exact_sum_of_sources": True,
            "target": "speech",
            "interferer": "hum",
            "tir_db": round(float(10.0 * np.log10(np.sum(s_f ** 2) / np.sum(i_f ** 2))), 3),
            "tir_definition": "10*log10(energy(speech)/energy(hum)) over the whole clip",
            "levels": {
                "mixture": levels(np, m16),
                "speech": levels(np, s16),
                "hum": levels(np, i16),
            },
            "level_definition": "dBFS relative to 16-bit full scale; rms_dbfs = 20*log10(RMS)",
            "text": " ".join(u["text"] for u in UTTERANCES),
            "utterances": placements,
            "espeak_ng": espeak_version(espeak),
            "hum": {
                "mains_hz": MAINS_HZ,
                "harmonic_amplitudes": list(HUM_HARMONICS),
                "hiss_below_hum_db": HISS_BELOW_HUM_DB,
                **extra,
            },
            "prompts": PROMPTS,
            "suggested_commands": [
                f"samstream separate examples/{NAME}.flac --text \"speech\" -o out/speech",
                f"samstream separate examples/{NAME}.flac --text \"mains hum\" -o out/hum",
            ],
        }
        with open(os.path.join(stage, f"{NAME}.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
            fh.write("\n")

        # Move into place.
        os.makedirs(src_dir, exist_ok=True)
        os.replace(os.path.join(stage, "sources", "speech.flac"), os.path.join(src_dir, "speech.flac"))
        os.replace(os.path.join(stage, "sources", "hum.flac"), os.path.join(src_dir, "hum.flac"))
        os.replace(os.path.join(stage, f"{NAME}.json"), os.path.join(args.out, f"{NAME}.json"))
        os.replace(os.path.join(stage, f"{NAME}.flac"), os.path.join(args.out, f"{NAME}.flac"))
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    lv = meta["levels"]
    print(f"wrote {os.path.join(args.out, NAME)}.flac (+ .json, .sources/): seed {args.seed}, "
          f"TIR {meta['tir_db']:+.2f} dB, mixture peak {lv['mixture']['peak_dbfs']} dBFS, "
          f"RMS {lv['mixture']['rms_dbfs']} dBFS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RenderError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
