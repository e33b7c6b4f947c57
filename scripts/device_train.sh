#!/usr/bin/env bash
# Train the separation model on a GPU machine that reaches nothing outside itself.
#
# Prepare here (a machine with the corpus and the internet): scripts/device_prepare.sh. It
# writes data/packed (part of the corpus as Opus, with its caption embeddings) and .whl/
# (the wheels that machine's Python lacks). Then, on the GPU
# machine, in the repository root, with both carried:
#
#   scripts/device_train.sh OUT [PRESET] [MINUTES] [more `samstream train` options]
#
# It trains PRESET (default medium-detail) from scratch for MINUTES of wall-clock time
# (default 8; the learning rate's cosine ends with the budget), drawing batches in worker
# processes, with the network under bfloat16 autocast, and leaves in OUT the checkpoint
# (config.json, model.safetensors, in 15 MiB parts where larger), log.csv and the run's summary. Later options override
# the defaults below (`--grow-from models/default --preset small-deep`, say).
#
# SAMSTREAM_DEVICE (default cuda), SAMSTREAM_PRECISION (default bfloat16), SAMSTREAM_DATA (default
# data/packed), SAMSTREAM_WHEELS (default .whl), SAMSTREAM_WORKERS, SAMSTREAM_PART_MIB (default 15)
# and PYTHON (default python3) let the same script run on a CPU, as the tests run it.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: scripts/device_train.sh OUT [PRESET] [MINUTES] [samstream train options...]" >&2
    exit 2
fi
out=$1
preset=${2:-medium-detail}
minutes=${3:-8}
shift $(( $# < 3 ? $# : 3 ))
python=${PYTHON:-python3}
device=${SAMSTREAM_DEVICE:-cuda}
data=${SAMSTREAM_DATA:-data/packed}
mkdir -p "$out"
if [ ! -f "$data/manifest.jsonl" ] || [ ! -f "$data/caption_embeddings.npz" ]; then
    echo "device_train: $data lacks manifest.jsonl or caption_embeddings.npz; run scripts/device_prepare.sh first" >&2
    exit 2
fi
# samstream itself is installed from this checkout, so the run trains the code that travelled with it.
wheels=${SAMSTREAM_WHEELS:-.whl}
site=$(mktemp -d)
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --no-build-isolation --target "$site" \
    . $(compgen -G "$wheels/*.whl" || true)
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
cores=$(nproc)
workers=${SAMSTREAM_WORKERS:-$(( cores > 3 ? cores - 2 : 1 ))}
run=$(mktemp -d)
started=$(date +%s)
"$python" -m samstream.plugin_host.cli train --data "$data" --run "$run" --preset "$preset" \
    --device "$device" --precision "${SAMSTREAM_PRECISION:-bfloat16}" --workers "$workers" --minutes "$minutes" \
    --steps 10000000 --batch-size 32 --learning-rate 1e-3 --warmup-steps 300 --visual-share 0.5 \
    --save-every 500 --validation 0 --no-progress "$@" | tee "$out/summary.txt"
cp "$run/checkpoint/config.json" "$run/log.csv" "$out/"
# A device call returns files of at most 16 MiB, and medium-detail's weights are 17.5 MB: larger
# weights come back in parts, joined here by `cat OUT/model.safetensors.part-* > OUT/model.safetensors`.
part_mib=${SAMSTREAM_PART_MIB:-15}
if [ "$(stat -c %s "$run/checkpoint/model.safetensors")" -gt $(( part_mib * 1024 * 1024 )) ]; then
    split -b "${part_mib}M" -d "$run/checkpoint/model.safetensors" "$out/model.safetensors.part-"
else
    cp "$run/checkpoint/model.safetensors" "$out/"
fi
"$python" - "$run/log.csv" "$(( $(date +%s) - started ))" "$workers" <<'PY' | tee -a "$out/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
losses = [float(row["loss"]) for row in rows]
tail = losses[-max(1, len(losses) // 20):]
print(f"steps {last['step']} in {float(last['seconds']):.0f} s of training ({sys.argv[2]} s in all, "
      f"{sys.argv[3]} batch workers): {int(last['step']) / max(1e-9, float(last['seconds'])):.2f} steps/s; "
      f"loss first {losses[0]:.4f}, last 5 % {sum(tail) / len(tail):.4f}")
PY
