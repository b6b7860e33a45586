#!/usr/bin/env bash
# Gateway overhead on a cache miss through the OpenAI adapter (pass-through) and through the
# Anthropic adapter (request and response translated), against the same canned upstream
# (sluice-mock-upstream serves both /v1/chat/completions and /v1/messages). For each: the upstream
# called directly, then through Sluice; added latency = through - direct. wrk, c=1 and c=32.
#
# Usage: scripts/bench-adapters.sh     Env: BENCH_DURATION=10  BENCH_OUT=target/bench-adapters
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10}"
OUT="${BENCH_OUT:-$ROOT/target/bench-adapters}"
KEY="sk-bench-adapters"
log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
command -v wrk >/dev/null || scripts/setup.sh </dev/null
command -v wrk >/dev/null || die "wrk not found"
cargo build --release --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
rm -rf "$OUT" && mkdir -p "$OUT"
# start runs inside $(...), a subshell: pids go to files so the EXIT trap can find them.
trap 'for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; true' EXIT

# start NAME PATTERN CMD...: prints the http:// address the process announces on stdout.
start() {
    local name="$1" pattern="$2"; shift 2
    "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" </dev/null &
    echo $! >"$OUT/$name.pid"
    for _ in $(seq 1 300); do
        addr="$(sed -n "s|^$pattern \(http://[0-9.:]*\).*|\1|p" "$OUT/$name.stdout" | head -n 1)"
        [ -n "$addr" ] && { echo "$addr"; return; }
        sleep 0.1
    done
    die "$name did not start"
}
MOCK="$(start mock "mock upstream listening on" "$BIN/sluice-mock-upstream" --listen 127.0.0.1:0 --workers 1)"
cat >"$OUT/sluice.yaml" <<YAML
model_list:
  - model_name: via-openai
    litellm_params: {model: openai/bench, api_base: $MOCK/v1, api_key: dummy}
  - model_name: via-anthropic
    litellm_params: {model: anthropic/bench, api_base: $MOCK, api_key: dummy}
general_settings: {master_key: $KEY}
sluice: {workers: 1, data_dir: $OUT/data, cache: {enabled: false}}
YAML
SLUICE="$(start sluice "sluice listening on" env -u SLUICE_MASTER_KEY -u RUST_LOG \
    "$BIN/sluice" serve --config "$OUT/sluice.yaml" --listen 127.0.0.1:0)"

# lua NAME BODY [EXTRA_HEADER]: a wrk script posting BODY.
lua() {
    cat >"$OUT/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["x-api-key"] = "dummy"
wrk.headers["anthropic-version"] = "2023-06-01"
done = function(s, l, r)
  io.write(string.format("RESULT %d %d %.0f\n", l:percentile(50), l:percentile(99), s.requests / (s.duration / 1e6)))
end
LUA
}
lua openai-direct '{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
lua openai-through '{"model":"via-openai","messages":[{"role":"user","content":"hi"}]}'
lua anthropic-direct '{"model":"bench","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}'
lua anthropic-through '{"model":"via-anthropic","messages":[{"role":"user","content":"hi"}]}'

for url in "$SLUICE/v1/chat/completions"; do
    for m in via-openai via-anthropic; do
        curl -sf -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
            -d "{\"model\":\"$m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" "$url" \
            | grep -q "benchmark upstream" || die "$m did not answer through sluice"
    done
done

run() { # NAME URL CONNS THREADS
    wrk -t"$4" -c"$3" -d1s -s "$OUT/$1.lua" "$2" >/dev/null
    wrk -t"$4" -c"$3" -d"${DURATION}s" --latency -s "$OUT/$1.lua" "$2" | grep '^RESULT' | cut -d' ' -f2-
}
printf '| path | connections | p50 us | p99 us | req/s |\n|---|---|---|---|---|\n'
for c in "1 1" "32 2"; do
    read -r conns threads <<<"$c"
    for pair in "openai-direct $MOCK/v1/chat/completions" "openai-through $SLUICE/v1/chat/completions" \
                "anthropic-direct $MOCK/v1/messages" "anthropic-through $SLUICE/v1/chat/completions"; do
        read -r name url <<<"$pair"
        read -r p50 p99 rps <<<"$(run "$name" "$url" "$conns" "$threads")"
        printf '| %s | %s | %s | %s | %s |\n' "$name" "$conns" "$p50" "$p99" "$rps"
    done
done
