#!/usr/bin/env bash
# One-command set-up: a virtualenv in .venv with the locked stack (requirements.lock), the bobench
# package (editable), and Debian's Fashion-MNIST files when apt is available.
# Usage: bash setup.sh            (then: source .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
# The whole stack from the lock: every package at one version, every file checked against its sha256
# (README "The locked stack" says how the lock is made and updated). torch and torchvision are the
# PyPI wheels, whose hashes a local wheel store with the same files matches.
.venv/bin/pip install --quiet --require-hashes -r requirements.lock
# bobench itself, editable; its dependencies and its build backend (setuptools) came from the lock.
.venv/bin/pip install --quiet --no-deps --no-build-isolation -e .

# From Debian when apt is available:
# - dataset-fashion-mnist: Fashion-MNIST (checked against pinned checksums at prepare time; without it the
#   workflow downloads the official files instead);
# - chromium + chromium-driver: the headless browser the report test opens the report in.
PACKAGES=""
[ -d /usr/share/datasets/fashion-mnist ] || PACKAGES="dataset-fashion-mnist"
command -v chromedriver >/dev/null || PACKAGES="$PACKAGES chromium chromium-driver"
if [ -n "$PACKAGES" ] && command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        # shellcheck disable=SC2086 # the package list is meant to split
        $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES \
            || echo "note: could not install $PACKAGES (Fashion-MNIST is then downloaded; the report test needs chromium)"
    fi
fi
echo "set-up done: source .venv/bin/activate"
