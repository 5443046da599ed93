#!/usr/bin/env bash
# Installs what gemma4c needs on Debian 12 (run as root or with sudo):
# the C toolchain and libraries it builds against, and what the tests use
# (clang for sanitizers and fuzzing, python3-jinja2/numpy for the reference
# chat templates, the npm reference tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs="build-essential clang libclang-rt-14-dev libjansson-dev libedit-dev python3-jinja2 python3-numpy nodejs npm"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Reference JS tokenizer for the tokenizer comparison tests (pinned by the lock file).
if [ ! -d tests/js/node_modules/@lenml/tokenizers ]; then
    echo "setup: npm ci (tests/js)"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
echo "setup: done"
