#!/usr/bin/env bash
# Gateway overhead: the same chat request sent straight to a canned upstream (sluice-mock-upstream)
# and through Sluice to it, side by side. Added latency = through - direct.
#
#   c=1   : wrk, 1 thread, 1 connection          -> p50 / p99 latency, req/s
#   c=32  : wrk, 2 threads, 32 connections       -> p50 / p99 latency, req/s
#   fixed : oha at a fixed 5,000 req/s, 32 conns -> p50 / p99 (corrected for coordinated omission)
#
# CPU placement (2 cores): Sluice runs alone on CPU 0 (BENCH_SLUICE_CPUS); the load generator and
# the mock upstream share CPU 1 (BENCH_LOAD_CPUS), in both the direct and the through runs, so the
# only difference between the two is Sluice. BENCH_PIN=0 turns pinning off.
#
# Usage: scripts/bench-overhead.sh
# Env:   BENCH_DURATION=10 (seconds per run)   BENCH_RATE=5000 (fixed-rate req/s)
#        BENCH_SLUICE_WORKERS=1                BENCH_PIN=1
#        BENCH_SLUICE_CPUS=0  BENCH_LOAD_CPUS=1
#        BENCH_OUT=target/bench-overhead       (raw outputs, config, logs)
#        BENCH_SLUICE_LOG_LEVEL=info           (Sluice's log level; info logs every request)
#        BENCH_BIN_DIR=DIR                     (use DIR/sluice and DIR/sluice-mock-upstream, no build)
# Needs: wrk (scripts/setup.sh installs it) and oha from crates.io (`cargo install oha --locked`;
#        the script installs it when missing, which takes several minutes). Debian has no wrk2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10}"
RATE="${BENCH_RATE:-5000}"
WORKERS="${BENCH_SLUICE_WORKERS:-1}"
PIN="${BENCH_PIN:-1}"
SLUICE_CPUS="${BENCH_SLUICE_CPUS:-0}"
LOAD_CPUS="${BENCH_LOAD_CPUS:-1}"
LOG_LEVEL="${BENCH_SLUICE_LOG_LEVEL:-info}"
OUT="${BENCH_OUT:-$ROOT/target/bench-overhead}"
KEY="sk-bench-overhead"
BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

if [ "$PIN" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
    log "taskset missing or fewer than 2 CPUs: not pinning"
    PIN=0
fi
# Command prefixes (arrays, so a backgrounded command's $! is the process itself).
PIN_SLUICE=() PIN_LOAD=()
if [ "$PIN" = 1 ]; then
    PIN_SLUICE=(taskset -c "$SLUICE_CPUS")
    PIN_LOAD=(taskset -c "$LOAD_CPUS")
fi

# --- tools and binaries ------------------------------------------------------------------------

command -v wrk >/dev/null || scripts/setup.sh </dev/null
command -v wrk >/dev/null || die "wrk not found"
OHA="$(command -v oha || true)"
[ -n "$OHA" ] || OHA="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
if [ ! -x "$OHA" ]; then
    log "oha not found: cargo install oha --locked (a few minutes)"
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
    local i addr=""
    for i in $(seq 1 300); do
        addr="$(sed -n "s|^$pattern \(http://[0-9.:]*\).*|\1|p" "$OUT/$name.stdout" | head -n 1)"
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.stderr" >&2; die "$name exited at start"; }
        sleep 0.1
    done
    [ -n "$addr" ] || die "$name printed no listening line"
    echo "$addr"
}

MOCK_URL="$(start mock "mock upstream listening on" "${PIN_LOAD[@]}" "$MOCK" --listen 127.0.0.1:0 --workers 1)"
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
SLUICE_URL="$(start sluice "sluice listening on" \
    "${PIN_SLUICE[@]}" env -u SLUICE_MASTER_KEY -u SLUICE_CONFIG -u RUST_LOG \
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

# cpu_ticks PID: user+system clock ticks used so far by the process (all threads).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK="$(getconf CLK_TCK)"

# record TARGET SCENARIO P50_US P99_US RPS REQUESTS ERRORS SLUICE_CPU_US_PER_REQ
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# run_wrk TARGET SCENARIO THREADS CONNS URL
run_wrk() {
    local target="$1" scenario="$2" threads="$3" conns="$4" url="$5" raw="$OUT/$1-$2.txt"
    log "$target $scenario: wrk -t$threads -c$conns -d${DURATION}s"
    local s0 s1
    s0="$(cpu_ticks "$SLUICE_PID")"
    "${PIN_LOAD[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$OUT/post.lua" \
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
    if [ "$target" = through ] && [ "$reqs" -gt 0 ]; then
        cpu="$(awk -v d="$((s1 - s0))" -v t="$TICK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
    fi
    record "$target" "$scenario" "$p50" "$p99" "$rps" "$reqs" "$errs" "$cpu"
}

# run_oha TARGET URL: fixed rate, latency corrected for coordinated omission.
run_oha() {
    local target="$1" url="$2" raw="$OUT/$1-fixed.json"
    log "$target fixed: oha -q $RATE -c 32 -z ${DURATION}s"
    local s0 s1
    s0="$(cpu_ticks "$SLUICE_PID")"
    "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json --latency-correction -z "${DURATION}s" \
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
    if [ "$target" = through ] && [ "$reqs" -gt 0 ]; then
        cpu="$(awk -v d="$((s1 - s0))" -v t="$TICK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
    fi
    record "$target" "fixed-$RATE" "$p50" "$p99" "$rps" "$reqs" "$errs" "$cpu"
}

for target in direct through; do
    if [ "$target" = direct ]; then url="$MOCK_URL"; else url="$SLUICE_URL"; fi
    log "$target: warm-up"
    "${PIN_LOAD[@]}" wrk -t2 -c32 -d2s -s "$OUT/post.lua" "$url/v1/chat/completions" >/dev/null
    run_wrk "$target" c1 1 1 "$url"
    run_wrk "$target" c32 2 32 "$url"
    run_oha "$target" "$url"
done

# --- report ------------------------------------------------------------------------------------

python3 - "$RESULTS" "$WORKERS" "$PIN" "$SLUICE_CPUS" "$LOAD_CPUS" "$DURATION" "$LOG_LEVEL" <<'PY' | tee "$OUT/table.md"
import sys
path, workers, pin, scpu, lcpu, duration, level = sys.argv[1:]
rows = {}
for line in open(path):
    t, sc, p50, p99, rps, reqs, errs, cpu = line.rstrip("\n").split("\t")
    rows[(t, sc)] = dict(p50=int(p50), p99=int(p99), rps=float(rps), reqs=int(reqs), errs=int(errs), cpu=cpu)
ms = lambda us: f"{us / 1000:.3f}"
print(f"sluice workers={workers}, log level {level}, "
      + (f"sluice on CPU {scpu}, load generator + mock upstream on CPU {lcpu}" if pin == "1" else "no CPU pinning")
      + f", {duration} s per run\n")
print("| load | direct p50 ms | through p50 ms | added p50 ms | direct p99 ms | through p99 ms | added p99 ms | direct req/s | through req/s | sluice CPU µs/req | errors (d/t) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
names = {"c1": "c=1 (wrk -t1 -c1)", "c32": "c=32 (wrk -t2 -c32)"}
for sc in [s for (t, s) in rows if t == "direct"]:
    d, t = rows[("direct", sc)], rows.get(("through", sc))
    if t is None:
        continue
    label = names[sc] if sc in names else f"fixed {sc.split('-')[-1]} req/s (oha -c32)"
    print(f"| {label} | {ms(d['p50'])} | {ms(t['p50'])} | {ms(t['p50'] - d['p50'])} | {ms(d['p99'])} | {ms(t['p99'])} "
          f"| {ms(t['p99'] - d['p99'])} | {d['rps']:,.0f} | {t['rps']:,.0f} | {t['cpu']} | {d['errs']}/{t['errs']} |")
PY
log "raw outputs in $OUT"
