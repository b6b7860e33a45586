#!/usr/bin/env bash
# The whole check: setup, format, lints, Rust tests, then the OpenAI-SDK end-to-end tests
# against the real binary, then the dashboard's browser tests (headless chromium; they also
# refresh the screenshots in docs/screenshots/). Stops at the first failure (non-zero exit) and
# names the step.
# The last line sums up every test run: "test.sh: N passed, 0 failed".
#
# Usage: scripts/test.sh            (from any directory; CI runs it through .ci/run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")"
current="setup"
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\ntest.sh: FAILED at step "%s" (exit %s)\n' "$current" "$rc" >&2
    fi
    rm -rf "$LOGS"
}
trap on_exit EXIT

step() { current="$1"; printf '\n==> %s\n' "$1"; }
# logged NAME CMD...: runs CMD, shows its output and keeps a copy for the final count.
logged() { local name="$1"; shift; "$@" 2>&1 | tee "$LOGS/$name.log"; }

step "setup"
scripts/setup.sh </dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run"
    logged nextest cargo nextest run --no-fail-fast
    step "cargo test --doc"  # nextest does not run doctests
    logged doctest cargo test --doc
else
    step "cargo test (cargo-nextest not installed)"
    logged cargotest cargo test --no-fail-fast
fi

step "cargo build --bin sluice"
cargo build --bin sluice
cargo build --bin sluice-mock-upstream  # the browser tests' upstream

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
export SLUICE_BIN="$target_dir/debug/sluice"

step "end-to-end tests (OpenAI Python SDK)"
logged pytest "$ROOT/.venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider --color=no

step "browser tests (dashboard, headless chromium)"
logged uitest node --test --test-reporter=spec tests/ui/

# Sum the passed tests of every runner (any failure has already stopped the script).
count() {
    local total=0 n
    # nextest: "Summary [ 1.2s] 42 tests run: 42 passed, 0 skipped"
    n="$(sed -n 's/.*tests\? run: \([0-9]\+\) passed.*/\1/p' "$LOGS"/nextest.log 2>/dev/null | tail -n 1)"
    total=$((total + ${n:-0}))
    # cargo test / doctests: "test result: ok. 5 passed; 0 failed; ..." (one line per binary)
    for n in $(cat "$LOGS"/doctest.log "$LOGS"/cargotest.log 2>/dev/null \
        | sed -n 's/^test result: ok\. \([0-9]\+\) passed.*/\1/p'); do
        total=$((total + n))
    done
    # pytest: "27 passed in 1.23s" / "27 passed, 1 skipped in ..."
    n="$(sed -n 's/^\([0-9]\+\) passed.* in [0-9.]\+s.*/\1/p' "$LOGS"/pytest.log | tail -n 1)"
    total=$((total + ${n:-0}))
    # node --test (spec reporter): "ℹ pass 12"
    n="$(sed -n 's/^ℹ pass \([0-9]\+\)$/\1/p' "$LOGS"/uitest.log 2>/dev/null | tail -n 1)"
    total=$((total + ${n:-0}))
    echo "$total"
}
skipped() {
    local total=0 n
    n="$(sed -n 's/.*tests\? run: [0-9]\+ passed, \([0-9]\+\) skipped.*/\1/p' "$LOGS"/nextest.log 2>/dev/null | tail -n 1)"
    total=$((total + ${n:-0}))
    n="$(sed -n 's/^[0-9]\+ passed, \([0-9]\+\) skipped.*/\1/p' "$LOGS"/pytest.log | tail -n 1)"
    total=$((total + ${n:-0}))
    echo "$total"
}
passed="$(count)"
skips="$(skipped)"
current="done"
printf '\nAll checks passed: fmt, clippy, Rust tests, end-to-end tests, browser tests.\n'
if [ "$skips" -gt 0 ]; then
    printf 'test.sh: %s passed, 0 failed, %s skipped\n' "$passed" "$skips"
else
    printf 'test.sh: %s passed, 0 failed\n' "$passed"
fi
