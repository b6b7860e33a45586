#!/usr/bin/env bash
# Soak and crash safety (issue #7), through the release binaries and sluice-mock-upstream.
#
#   soak : SOAK_SECONDS (default 600) of closed-loop chat load at concurrency 32, about half the
#          prompts repeated from a pool (cache hits) and half unique (misses, written back);
#          Sluice's VmRSS sampled every 10 s. PASS/FAIL: zero errors (non-2xx + socket errors),
#          and every RSS sample after the warm-up within 10% of the first one after it.
#   kill : the same load on a fresh data dir; after SOAK_KILL_AFTER seconds the driver sends
#          SIGKILL to Sluice, recording every ACKNOWLEDGED answer (200, whole body received):
#          request id, prompt, key, cache outcome, cost. Sluice restarts on the same data dir and
#          scripts/soak_driver.py verify checks spend, audit and cache for each of them; then a
#          clean stop and `sluice audit verify` on the data dir. PASS/FAIL per check.
#
# Usage: scripts/soak.sh [--soak | --kill]      (default: both)
# Env:   SOAK_SECONDS=600  SOAK_WARMUP=120 (s before the RSS reference and latency counting)
#        SOAK_CONCURRENCY=32  SOAK_HIT_RATIO=0.5  SOAK_POOL=500 (repeated prompts)
#        SOAK_UPSTREAM_DELAY_MS=20 (the mock's answer latency)
#        SOAK_MAX_ENTRIES=20000 (cache bound in the soak, so the cache reaches steady state)
#        SOAK_KILL_AFTER=30  SOAK_OUT=target/soak  SOAK_BIN_DIR=DIR (prebuilt binaries, no build)
#        SOAK_PII=off|detect|mask (sluice.pii.prompts; default: not set)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-all}"
case "$MODE" in all | --soak | --kill) ;; *) echo "usage: $0 [--soak | --kill]" >&2; exit 2 ;; esac
DURATION="${SOAK_SECONDS:-600}"
WARMUP="${SOAK_WARMUP:-120}"
CONC="${SOAK_CONCURRENCY:-32}"
HIT_RATIO="${SOAK_HIT_RATIO:-0.5}"
POOL="${SOAK_POOL:-500}"
DELAY_MS="${SOAK_UPSTREAM_DELAY_MS:-20}"
MAX_ENTRIES="${SOAK_MAX_ENTRIES:-20000}"
KILL_AFTER="${SOAK_KILL_AFTER:-30}"
PII="${SOAK_PII:-}"
OUT="${SOAK_OUT:-$ROOT/target/soak}"
KEY="sk-soak-master"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
DRIVER=(python3 "$ROOT/scripts/soak_driver.py")

log() { echo "soak: $*" >&2; }

if [ -n "${SOAK_BIN_DIR:-}" ]; then
    BIN_DIR="$SOAK_BIN_DIR"
else
    BIN_DIR="$TARGET_DIR/release"
    log "building release binaries"
    cargo build --release --bins
fi
SLUICE="$BIN_DIR/sluice"
MOCK="$BIN_DIR/sluice-mock-upstream"
scripts/fetch-models.sh >/dev/null

rm -rf "$OUT"
mkdir -p "$OUT"
# shellcheck source=lib/procs.sh
. "$ROOT/scripts/lib/procs.sh"
trap proc_stop_all EXIT

MOCK_URL="$(proc_start mock "mock upstream listening on" "$MOCK" --listen 127.0.0.1:0 --workers 1 --delay-ms "$DELAY_MS")"

# config FILE DATA_DIR MAX_ENTRIES|"": a chat group on the mock with a price, cache on.
config() {
    local bound=""
    [ -n "$3" ] && bound=", max_entries: $3"
    cat >"$1" <<YAML
model_list:
  - model_name: soak
    litellm_params: {model: openai/soak, api_base: $MOCK_URL/v1, api_key: dummy}
    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings: {master_key: $KEY}
sluice:
  log_level: warn
  data_dir: $2
  cache: {models_dir: $ROOT/models$bound}
YAML
    [ -z "$PII" ] || printf '  pii: {prompts: %s}\n' "$PII" >>"$1"
}
start_sluice() {
    proc_start sluice "sluice listening on" env -u SLUICE_MASTER_KEY -u SLUICE_CONFIG -u RUST_LOG \
        "$SLUICE" serve --config "$1" --listen 127.0.0.1:0
}

RESULT=0
MACHINE="$(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "machine: $MACHINE; mock upstream $MOCK_URL, delay ${DELAY_MS} ms"

if [ "$MODE" != --kill ]; then
    config "$OUT/soak.yaml" "$OUT/soak-data" "$MAX_ENTRIES"
    URL="$(start_sluice "$OUT/soak.yaml")"
    PID="$(proc_pid sluice)"
    log "soak: ${DURATION} s, c=$CONC, hit ratio ~$HIT_RATIO, pool $POOL, sluice $URL (pid $PID)"
    "${DRIVER[@]}" load --url "$URL" --key "$KEY" --concurrency "$CONC" --seconds "$DURATION" \
        --warmup "$WARMUP" --hit-ratio "$HIT_RATIO" --pool "$POOL" --rss-pid "$PID" --rss-every 10 \
        >"$OUT/soak.json"
    proc_stop sluice
    python3 - "$OUT/soak.json" "$WARMUP" <<'PY' | tee "$OUT/soak.txt" || RESULT=1
import json, sys
s = json.load(open(sys.argv[1]))
warmup = float(sys.argv[2])
after = [r["rss_kib"] / 1024 for r in s["rss"] if r["t"] >= warmup]
print(f"requests {s['requests']} in {s['seconds']} s ({s['rps']} req/s), ok {s['ok']}, "
      f"errors {s['errors']} (non-2xx {s['non_2xx']}, socket {s['socket_errors']} {s['error_kinds']})")
print(f"cache outcomes {s['outcomes']}, hit ratio {s['hit_ratio']:.3f}; "
      f"latency after warm-up p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")
first = s["rss"][0]["rss_kib"] / 1024 if s["rss"] else 0
print(f"RSS MiB: first sample {first:.1f}; after the {warmup:.0f} s warm-up: "
      + (f"first {after[0]:.1f}, min {min(after):.1f}, max {max(after):.1f}, last {after[-1]:.1f} ({len(after)} samples)" if after else "no samples"))
print("RSS samples (s:MiB): " + " ".join(f"{r['t']:.0f}:{r['rss_kib'] / 1024:.0f}" for r in s["rss"]))
ok_rss = bool(after) and all(abs(x - after[0]) <= 0.10 * after[0] for x in after)
ok_err = s["errors"] == 0 and s["requests"] > 0
print(f"{'PASS' if ok_rss else 'FAIL'}  RSS within 10% of the post-warm-up value"
      + (f" (drift {100 * (max(after) - after[0]) / after[0]:+.1f}% / {100 * (min(after) - after[0]) / after[0]:+.1f}%)" if after else ""))
print(f"{'PASS' if ok_err else 'FAIL'}  zero errors ({s['errors']})")
sys.exit(0 if ok_rss and ok_err else 1)
PY
fi

if [ "$MODE" != --soak ]; then
    config "$OUT/kill.yaml" "$OUT/kill-data" ""
    URL="$(start_sluice "$OUT/kill.yaml")"
    PID="$(proc_pid sluice)"
    log "kill: c=$CONC load, SIGKILL of sluice (pid $PID) after ${KILL_AFTER} s"
    "${DRIVER[@]}" load --url "$URL" --key "$KEY" --concurrency "$CONC" \
        --seconds "$((KILL_AFTER + 60))" --hit-ratio "$HIT_RATIO" --pool "$POOL" \
        --kill-pid "$PID" --kill-after "$KILL_AFTER" --acks "$OUT/acks.jsonl" >"$OUT/kill.json"
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && proc_die "sluice survived SIGKILL?"
    rm -f "$OUT/sluice.pid"
    cp "$OUT/sluice.stderr" "$OUT/sluice-killed.stderr"
    python3 -c "
import json, sys
s = json.load(open('$OUT/kill.json'))
print(f\"load before the kill: {s['requests']} requests, {s['ok']} acknowledged, errors {s['errors']} \"
      f\"(non-2xx {s['non_2xx']}, socket {s['socket_errors']}), outcomes {s['outcomes']}; \"
      f\"{s['errors_after_kill']} failed attempts after the kill (expected)\")
" | tee "$OUT/kill.txt"
    URL="$(start_sluice "$OUT/kill.yaml")"
    log "restarted on the same data dir: $URL"
    "${DRIVER[@]}" verify --url "$URL" --key "$KEY" --concurrency "$CONC" --acks "$OUT/acks.jsonl" \
        | tee -a "$OUT/kill.txt" || RESULT=1
    proc_stop sluice
    if "$SLUICE" audit verify --data-dir "$OUT/kill-data" >"$OUT/audit-verify.txt" 2>&1; then
        echo "PASS  audit chain: $(head -n 1 "$OUT/audit-verify.txt")" | tee -a "$OUT/kill.txt"
    else
        echo "FAIL  audit chain: $(cat "$OUT/audit-verify.txt")" | tee -a "$OUT/kill.txt"
        RESULT=1
    fi
fi
log "outputs in $OUT"
exit "$RESULT"
