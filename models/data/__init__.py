"""The training-data half of samstream: corpus rendering, captions, manifests, mixtures.

Everything here imports numpy, scipy and soundfile only (no torch): the corpus is
rendered offline by ``samstream data build`` and mixed on the fly by
:class:`samstream.models.data.mixtures.MixtureSampler`, whose items are plain numpy
arrays that any training loop (torch's ``Dataset`` protocol included) can consume.

Constants shared by every module live here: the corpus is 48 kHz mono, and activity
labels are given per model hop (128 samples at 48 kHz, the streaming STFT's hop).
"""

SAMPLE_RATE = 48_000
HOP = 128

__all__ = ["HOP", "SAMPLE_RATE"]
