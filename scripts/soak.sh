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
#   pii  : (only with --pii) end-to-end cost of the PII guard: the same ~2 KB chat request with
#          an e-mail, a phone number and a card number, cache off, upstream delay 0, through
#          Sluice with sluice.pii.prompts off and then mask; c=1 and c=32 for SOAK_PII_SECONDS
#          (default 30) each; p50/p99 and the difference.
#
# Usage: scripts/soak.sh [--soak | --kill | --pii]      (default: soak then kill)
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
case "$MODE" in all | --soak | --kill | --pii) ;; *) echo "usage: $0 [--soak | --kill | --pii]" >&2; exit 2 ;; esac
DURATION="${SOAK_SECONDS:-600}"
WARMUP="${SOAK_WARMUP:-120}"
CONC="${SOAK_CONCURRENCY:-32}"
HIT_RATIO="${SOAK_HIT_RATIO:-0.5}"
POOL="${SOAK_POOL:-500}"
DELAY_MS="${SOAK_UPSTREAM_DELAY_MS:-20}"
[ "$MODE" = --pii ] && DELAY_MS=0
PII_SECONDS="${SOAK_PII_SECONDS:-30}"
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

if [ "$MODE" = --pii ]; then
    python3 - "$OUT/pii-body.json" <<'PY'
import json, sys
prose = ("The quarterly report covers 3 regions and 12 product lines. Revenue grew by 4.5% to $1,299.99 "
         "per seat, shipped on 2024-01-15 in version 2.3.1 of the client. Please summarise the main risks, "
         "list the open questions for the board, and suggest two follow-ups for the team meeting on Friday "
         "at 10:30. ") * 7
user = prose[:1700] + (" Send the summary to jane.doe@example.com, call me on +44 20 7946 0958 if anything "
                       "is unclear, and charge the usual card 4111 1111 1111 1111.")
json.dump({"model": "soak", "messages": [
    {"role": "system", "content": "You are a concise assistant for a finance team. Answer in plain English."},
    {"role": "user", "content": user}]}, open(sys.argv[1], "w"))
PY
    : >"$OUT/pii.tsv"
    for policy in off mask; do
        PII="$policy"
        config "$OUT/pii-$policy.yaml" "$OUT/pii-$policy-data" ""
        sed -i 's|  cache: {.*}|  cache: {enabled: false}|' "$OUT/pii-$policy.yaml"
        URL="$(start_sluice "$OUT/pii-$policy.yaml")"
        for c in 1 32; do
            log "pii $policy: c=$c, ${PII_SECONDS} s"
            "${DRIVER[@]}" load --url "$URL" --key "$KEY" --concurrency "$c" --seconds 3 \
                --body-file "$OUT/pii-body.json" >/dev/null
            "${DRIVER[@]}" load --url "$URL" --key "$KEY" --concurrency "$c" --seconds "$PII_SECONDS" \
                --body-file "$OUT/pii-body.json" >"$OUT/pii-$policy-c$c.json"
            python3 -c "
import json; s = json.load(open('$OUT/pii-$policy-c$c.json'))
print('\t'.join(map(str, ['$policy', $c, s['p50_ms'], s['p99_ms'], s['rps'], s['errors']])))" >>"$OUT/pii.tsv"
        done
        proc_stop sluice
    done
    python3 - "$OUT/pii.tsv" <<'PY' | tee "$OUT/pii.md"
import sys
rows = {}
for line in open(sys.argv[1]):
    policy, c, p50, p99, rps, errs = line.split("\t")
    rows[(policy, c)] = (float(p50), float(p99), float(rps), int(errs))
print("| load | p50 off ms | p50 mask ms | added p50 ms | p99 off ms | p99 mask ms | added p99 ms | req/s off / mask | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|")
for c in ("1", "32"):
    o, m = rows[("off", c)], rows[("mask", c)]
    print(f"| c={c} | {o[0]:.3f} | {m[0]:.3f} | {m[0] - o[0]:+.3f} | {o[1]:.3f} | {m[1]:.3f} | {m[1] - o[1]:+.3f} "
          f"| {o[2]:,.0f} / {m[2]:,.0f} | {o[3] + m[3]} |")
PY
    log "outputs in $OUT"
    exit 0
fi

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
