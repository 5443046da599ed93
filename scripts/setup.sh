#!/usr/bin/env bash
# Installs what gemma4c needs on Debian 12 (run as root or with sudo):
# the C toolchain and libraries it builds against (libmicrohttpd: gemma4c serve), and what the tests use
# (clang for sanitizers and fuzzing, python3-jinja2/numpy for the reference
# chat templates, the npm reference tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
pkgs="build-essential clang libclang-rt-14-dev libjansson-dev libedit-dev libmicrohttpd-dev python3-jinja2 python3-numpy"
# headless Chromium for the chat page test (tests/sh/serve_page.sh)
pkgs="$pkgs chromium"
# media decoders (src/media/, the Makefile's MEDIA_LIBS says why each), and
# ffmpeg for the tests that make clips and other image formats; FFmpeg's -dev
# packages give video.c its headers (the libraries are dlopen'ed, not linked)
pkgs="$pkgs libspng-dev libjpeg-dev libwebp-dev libgif-dev libexif-dev libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg"
# audio (src/media/audio.c): libsndfile decodes, libsoxr resamples
pkgs="$pkgs libsndfile1-dev libsoxr-dev"
# training: python3-torch checks the gradients (tests/sh/grad_torch.sh)
pkgs="$pkgs python3-torch"
# the demo model's training data (scripts/wordnet_chat.py)
pkgs="$pkgs wordnet-base"
missing=""
# arch-qualified: with arm64 libraries also installed, a bare name is ambiguous
for p in $pkgs; do dpkg -s "$p:$arch" >/dev/null 2>&1 || dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# Node.js may come from elsewhere than Debian (it does on this machine kind)
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Arm64 proof (tests/sh/arm64.sh): cross compiler, qemu-user and arm64 jansson.
if [ "$(dpkg --print-architecture)" = amd64 ]; then
    a64="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libjansson-dev:arm64"
    missing=""
    for p in $a64; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        echo "setup: installing$missing"
        dpkg --print-foreign-architectures | grep -q arm64 || $SUDO dpkg --add-architecture arm64
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq $missing >/dev/null
    fi
fi
# Reference JS tokenizer for the tokenizer comparison tests and ajv for the
# constrained-decoding tests, the openai and ollama clients for the server
# tests, puppeteer-core for the chat page test (pinned by the lock file).
if [ ! -d tests/js/node_modules/@lenml/tokenizers ] || [ ! -d tests/js/node_modules/ajv ] ||
    [ ! -d tests/js/node_modules/openai ] || [ ! -d tests/js/node_modules/ollama ] ||
    [ ! -d tests/js/node_modules/puppeteer-core ]; then
    echo "setup: npm ci (tests/js)"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
echo "setup: done"
