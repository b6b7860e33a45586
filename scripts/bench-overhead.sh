#!/usr/bin/env bash
# Gateway overhead: the same chat request sent straight to a canned upstream (sluice-mock-upstream)
# and through Sluice to it, side by side. Added latency = through - direct. Cache off.
#
#   c=1   : wrk, 1 thread, 1 connection          -> p50 / p99 latency, req/s
#   c=32  : wrk, 2 threads, 32 connections       -> p50 / p99 latency, req/s
#   fixed : oha at a fixed 5,000 req/s, 32 conns -> p50 / p99, corrected for coordinated omission
#           (oha --latency-correction: latency counts from when a request was due, not sent)
#
# CPU placement, per scenario, as "SLUICE MOCK CLIENT" CPU lists (taskset; the direct and the
# through run of a scenario use the same one, and processes are re-pinned with `taskset -a -p`
# between scenarios). On this 2-vCPU VM a wake-up across CPUs costs ~30 us, so placement matters:
#   c=1   "0 0 1": the client on CPU 1, the servers on CPU 0. Direct and through then cross CPUs
#                  the same number of times (client -> server -> client), as a client on another
#                  machine would; the Sluice -> upstream hop stays on one CPU.
#   c=32  "0 1 1": Sluice alone on CPU 0, load generator + upstream on CPU 1 (throughput).
#   fixed "0 1 1": as c=32.
# Override with BENCH_PLACE_C1 / BENCH_PLACE_C32 / BENCH_PLACE_FIXED, or BENCH_PIN=0 for none.
#
# Usage: scripts/bench-overhead.sh
# Env:   BENCH_DURATION=10 (seconds per run)   BENCH_RATE=5000 (fixed-rate req/s)
#        BENCH_SLUICE_WORKERS=1                BENCH_SLUICE_LOG_LEVEL=info (info logs every request)
#        BENCH_OUT=target/bench-overhead       (raw outputs, config, logs)
#        BENCH_BIN_DIR=DIR                     (use DIR/sluice and DIR/sluice-mock-upstream, no build)
#        BENCH_BODY='{...}'                    (the chat request; no single quotes; default: "hi")
#        BENCH_SLUICE_PII=off|detect|mask      (sluice.pii.prompts; default: not set)
# Needs: wrk (scripts/setup.sh installs it) and oha from crates.io (`cargo install oha --locked`;
#        the script installs it when missing, which takes several minutes). Debian has no wrk2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10}"
RATE="${BENCH_RATE:-5000}"
WORKERS="${BENCH_SLUICE_WORKERS:-1}"
PIN="${BENCH_PIN:-1}"
PLACE_C1="${BENCH_PLACE_C1:-0 0 1}"
PLACE_C32="${BENCH_PLACE_C32:-0 1 1}"
PLACE_FIXED="${BENCH_PLACE_FIXED:-0 1 1}"
LOG_LEVEL="${BENCH_SLUICE_LOG_LEVEL:-info}"
OUT="${BENCH_OUT:-$ROOT/target/bench-overhead}"
KEY="sk-bench-overhead"
DEFAULT_BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
BODY="${BENCH_BODY:-$DEFAULT_BODY}"
PII="${BENCH_SLUICE_PII:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

if [ "$PIN" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
    log "taskset missing or fewer than 2 CPUs: not pinning"
    PIN=0
fi

# --- tools and binaries ------------------------------------------------------------------------

command -v wrk >/dev/null || scripts/setup.sh </dev/null
command -v wrk >/dev/null || die "wrk not found"
OHA="$(command -v oha || true)"
[ -n "$OHA" ] || OHA="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
if [ ! -x "$OHA" ]; then
    log "oha not found: cargo install oha --locked (several minutes)"
    cargo install oha --locked </dev/null
fi

if [ -n "${BENCH_BIN_DIR:-}" ]; then
    BIN_DIR="$BENCH_BIN_DIR"
    log "using the binaries in $BIN_DIR (no build)"
else
    BIN_DIR="$TARGET_DIR/release"
    log "building release binaries"
    cargo build --release --bins
fi
SLUICE="$BIN_DIR/sluice"
MOCK="$BIN_DIR/sluice-mock-upstream"

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

# --- processes ---------------------------------------------------------------------------------

# Each started process writes its pid to $OUT/NAME.pid (start runs in a subshell).
cleanup() {
    local f p
    for f in "$OUT"/*.pid; do
        [ -f "$f" ] || continue
        p="$(cat "$f")"
        kill "$p" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        rm -f "$f"
    done
}
trap cleanup EXIT

# start NAME PATTERN CMD...: starts CMD in the background and prints the http:// address from
# the first stdout line matching "PATTERN http://ADDR".
start() {
    local name="$1" pattern="$2"; shift 2
    "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" </dev/null &
    local pid=$!
    echo "$pid" >"$OUT/$name.pid"
    local addr=""
    for _ in $(seq 1 300); do
        addr="$(sed -n "s|^$pattern \(http://[0-9.:]*\).*|\1|p" "$OUT/$name.stdout" | head -n 1)"
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.stderr" >&2; die "$name exited at start"; }
        sleep 0.1
    done
    [ -n "$addr" ] || die "$name printed no listening line"
    echo "$addr"
}

MOCK_URL="$(start mock "mock upstream listening on" "$MOCK" --listen 127.0.0.1:0 --workers 1)"
MOCK_PID="$(cat "$OUT/mock.pid")"

cat >"$OUT/sluice.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: $MOCK_URL/v1, api_key: dummy}
general_settings: {master_key: $KEY}
sluice:
  workers: $WORKERS
  log_level: $LOG_LEVEL
  data_dir: $OUT/data
  cache: {enabled: false}
EOF
[ -z "$PII" ] || printf '  pii: {prompts: %s}\n' "$PII" >>"$OUT/sluice.yaml"
SLUICE_URL="$(start sluice "sluice listening on" \
    env -u SLUICE_MASTER_KEY -u SLUICE_CONFIG -u RUST_LOG \
    "$SLUICE" serve --config "$OUT/sluice.yaml" --listen 127.0.0.1:0)"
SLUICE_PID="$(cat "$OUT/sluice.pid")"
log "mock upstream $MOCK_URL (pid $MOCK_PID), sluice $SLUICE_URL (pid $SLUICE_PID, workers $WORKERS)"

# Sanity: both answer 200, and Sluice routes to the mock.
for url in "$MOCK_URL" "$SLUICE_URL"; do
    code="$(curl -s -o "$OUT/sanity.json" -w '%{http_code}' -H 'content-type: application/json' \
        -H "authorization: Bearer $KEY" -d "$BODY" "$url/v1/chat/completions")"
    [ "$code" = 200 ] || { cat "$OUT/sanity.json" >&2; die "$url answered $code"; }
done
grep -q "benchmark upstream" "$OUT/sanity.json" || die "sluice did not return the mock's answer"

cat >"$OUT/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT p50_us=%d p99_us=%d rps=%.1f requests=%d errors=%d\n",
    latency:percentile(50), latency:percentile(99),
    summary.requests / (summary.duration / 1e6), summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

# place "S M C": pins Sluice (all threads) and the mock, and sets CLIENT (the prefix that pins
# the load generator).
CLIENT=()
place() {
    local s m c
    read -r s m c <<<"$1"
    if [ "$PIN" = 1 ]; then
        taskset -a -p -c "$s" "$SLUICE_PID" >/dev/null
        taskset -a -p -c "$m" "$MOCK_PID" >/dev/null
        CLIENT=(taskset -c "$c")
    else
        CLIENT=()
    fi
}
describe() {
    local s m c
    read -r s m c <<<"$1"
    [ "$PIN" = 1 ] && echo "sluice CPU $s, mock CPU $m, client CPU $c" || echo "unpinned"
}

# cpu_ticks PID: user+system clock ticks used so far by the process (all threads).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK="$(getconf CLK_TCK)"
cpu_per_req() { awk -v d="$1" -v t="$TICK" -v n="$2" 'BEGIN {printf "%.0f", d / t * 1e6 / n}'; }

# record TARGET SCENARIO P50_US P99_US RPS REQUESTS ERRORS SLUICE_CPU_US_PER_REQ
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

warm() { "${CLIENT[@]}" wrk -t2 -c32 -d1s -s "$OUT/post.lua" "$1/v1/chat/completions" >/dev/null; }

# run_wrk TARGET SCENARIO THREADS CONNS URL
run_wrk() {
    local target="$1" scenario="$2" threads="$3" conns="$4" url="$5" raw="$OUT/$1-$2.txt"
    log "$target $scenario: wrk -t$threads -c$conns -d${DURATION}s"
    local s0 s1
    s0="$(cpu_ticks "$SLUICE_PID")"
    "${CLIENT[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$OUT/post.lua" \
        "$url/v1/chat/completions" >"$raw"
    s1="$(cpu_ticks "$SLUICE_PID")"
    local line p50 p99 rps reqs errs
    line="$(grep '^RESULT' "$raw")" || die "no RESULT line in $raw"
    p50="$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$line")"
    p99="$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$line")"
    rps="$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$line")"
    reqs="$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")"
    errs="$(sed 's/.*errors=\([0-9]*\).*/\1/' <<<"$line")"
    local cpu="-"
    if [ "$target" = through ] && [ "$reqs" -gt 0 ]; then cpu="$(cpu_per_req "$((s1 - s0))" "$reqs")"; fi
    record "$target" "$scenario" "$p50" "$p99" "$rps" "$reqs" "$errs" "$cpu"
}

# run_oha TARGET URL: fixed rate, latency corrected for coordinated omission.
run_oha() {
    local target="$1" url="$2" raw="$OUT/$1-fixed.json"
    log "$target fixed: oha -q $RATE -c 32 -z ${DURATION}s --latency-correction"
    local s0 s1
    s0="$(cpu_ticks "$SLUICE_PID")"
    "${CLIENT[@]}" "$OHA" --no-tui --output-format json --latency-correction -z "${DURATION}s" \
        -q "$RATE" -c 32 -m POST -H 'content-type: application/json' -H "authorization: Bearer $KEY" \
        -d "$BODY" "$url/v1/chat/completions" >"$raw"
    s1="$(cpu_ticks "$SLUICE_PID")"
    local fields
    fields="$(python3 - "$raw" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
# Requests still in flight when the run ends are reported as "aborted due to deadline": not errors.
errs = {k: v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k}
answered = sum(codes.values())
bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(errs.values())
print(round(p["p50"] * 1e6), round(p["p99"] * 1e6), round(s["requestsPerSec"], 1), answered, bad)
PY
)"
    local p50 p99 rps reqs errs
    read -r p50 p99 rps reqs errs <<<"$fields"
    local cpu="-"
    if [ "$target" = through ] && [ "$reqs" -gt 0 ]; then cpu="$(cpu_per_req "$((s1 - s0))" "$reqs")"; fi
    record "$target" "fixed-$RATE" "$p50" "$p99" "$rps" "$reqs" "$errs" "$cpu"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for scenario in c1 c32 fixed; do
    case "$scenario" in
        c1) placement="$PLACE_C1" ;;
        c32) placement="$PLACE_C32" ;;
        fixed) placement="$PLACE_FIXED" ;;
    esac
    place "$placement"
    echo -e "$scenario\t$(describe "$placement")" >>"$OUT/placement.tsv"
    for target in direct through; do
        if [ "$target" = direct ]; then url="$MOCK_URL"; else url="$SLUICE_URL"; fi
        warm "$url"
        case "$scenario" in
            c1) run_wrk "$target" c1 1 1 "$url" ;;
            c32) run_wrk "$target" c32 2 32 "$url" ;;
            fixed) run_oha "$target" "$url" ;;
        esac
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ------------------------------------------------------------------------------------

python3 - "$RESULTS" "$OUT/placement.tsv" "$WORKERS" "$DURATION" "$LOG_LEVEL" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY' | tee "$OUT/table.md"
import sys
path, placement_path, workers, duration, level, load_before, load_after = sys.argv[1:]
rows = {}
for line in open(path):
    t, sc, p50, p99, rps, reqs, errs, cpu = line.rstrip("\n").split("\t")
    rows[(t, sc)] = dict(p50=int(p50), p99=int(p99), rps=float(rps), reqs=int(reqs), errs=int(errs), cpu=cpu)
placement = dict(line.rstrip("\n").split("\t") for line in open(placement_path))
ms = lambda us: f"{us / 1000:.3f}"
print(f"sluice workers={workers}, log level {level}, cache off, {duration} s per run; "
      f"load average before {load_before}, after {load_after}\n")
print("| load | CPU placement | direct p50 ms | through p50 ms | added p50 ms | direct p99 ms | through p99 ms "
      "| added p99 ms | direct req/s | through req/s | sluice CPU µs/req | errors (d/t) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
names = {"c1": "c=1 (wrk -t1 -c1)", "c32": "c=32 (wrk -t2 -c32)"}
for sc in [s for (t, s) in rows if t == "direct"]:
    d, t = rows[("direct", sc)], rows.get(("through", sc))
    if t is None:
        continue
    key = sc if sc in names else "fixed"
    label = names.get(sc) or f"fixed {sc.split('-')[-1]} req/s (oha -c32)"
    print(f"| {label} | {placement.get(key, '?')} | {ms(d['p50'])} | {ms(t['p50'])} | {ms(t['p50'] - d['p50'])} "
          f"| {ms(d['p99'])} | {ms(t['p99'])} | {ms(t['p99'] - d['p99'])} | {d['rps']:,.0f} | {t['rps']:,.0f} "
          f"| {t['cpu']} | {d['errs']}/{t['errs']} |")
PY
log "raw outputs in $OUT"
