#!/usr/bin/env bash
# What scripts/device_train.sh needs on a GPU machine that reaches nothing: run here, in the
# repository root, after `make test` (the venv) and `samstream data build` (the corpus).
#
#   data/packed  part of the training split as Opus, with its caption embeddings (48 MB)
#   .whl/        wheels for that machine's Python 3.12 that its image lacks: soundfile and
#                what it needs (device_train.sh installs samstream from the checkout)
#
# Both are git-ignored; a device call carries them (`carry: ["data/packed", ".whl"]`).
set -euo pipefail
megabytes=${1:-48}
if [ ! -f data/packed/manifest.jsonl ]; then
    .venv/bin/samstream data pack --out data/packed --max-mb "$megabytes"
elif [ ! -f data/packed/caption_embeddings.npz ]; then
    .venv/bin/samstream data captions --root data/packed
fi
rm -rf .whl && mkdir -p .whl
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
du -sh data/packed .whl
