#!/usr/bin/env bash
# Cache hits over HTTP: exact and semantic hit latency at c=1 and throughput at c=32, through the
# real release binary with the real embedding model (the upstream is only called once, to seed).
#
# Semantic hits are measured twice: with the embedding memo off (every hit runs the model) and
# with the default memo (a repeated paraphrase reuses its vector).
#
# Usage: scripts/bench-cache.sh      Env: BENCH_DURATION=10  BENCH_OUT=target/bench-cache
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10}"
OUT="${BENCH_OUT:-$ROOT/target/bench-cache}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
KEY="sk-bench-cache"
command -v wrk >/dev/null || scripts/setup.sh </dev/null
scripts/fetch-models.sh >/dev/null
cargo build --release --bins
rm -rf "$OUT"; mkdir -p "$OUT"

# shellcheck source=lib/procs.sh
. "$ROOT/scripts/lib/procs.sh"
trap proc_stop_all EXIT
MOCK="$(proc_start mock "mock upstream listening on" "$TARGET_DIR/release/sluice-mock-upstream" --listen 127.0.0.1:0)"
# GATEWAY NAME MEMO: starts a gateway (memo = embedding_memo_entries), seeds one answer, checks
# the three outcomes and sets URL.
gateway() {
    cat >"$OUT/$1.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: $MOCK/v1, api_key: dummy}
general_settings: {master_key: $KEY}
sluice: {data_dir: $OUT/$1-state, log_level: warn, cache: {models_dir: $ROOT/models, embedding_memo_entries: $2}}
YAML
    URL="$(proc_start "$1" "sluice listening on" "$TARGET_DIR/release/sluice" serve --config "$OUT/$1.yaml" --listen 127.0.0.1:0)"
    echo "$1: seed $(post 'How do I reset my password?'), exact $(post 'How do I reset my password?'), semantic $(post 'how do i reset my password')" >&2
}
body() { printf '{"model":"bench","messages":[{"role":"user","content":"%s"}]}' "$1"; }
post() { curl -s -D "$OUT/h" -o /dev/null -H "authorization: Bearer $KEY" -H 'content-type: application/json' -d "$(body "$1")" "$URL/v1/chat/completions"; grep -i '^x-sluice-cache:' "$OUT/h" | tr -d '\r' | awk '{print $2}'; }

run() { # NAME THREADS CONNS PROMPT
    cat >"$OUT/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = '$(body "$4")'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
done = function(s, l, r)
  io.write(string.format("RESULT %d %d %.0f %d\n", l:percentile(50), l:percentile(99), s.requests / (s.duration / 1e6), s.errors.status + s.errors.connect + s.errors.read + s.errors.timeout))
end
LUA
    wrk -t"$2" -c"$3" -d"${DURATION}s" --latency -s "$OUT/$1.lua" "$URL/v1/chat/completions" >"$OUT/$1.txt"
    read -r _ p50 p99 rps errs < <(grep '^RESULT' "$OUT/$1.txt")
    awk -v n="$1" -v c="$3" -v a="$p50" -v b="$p99" -v r="$rps" -v e="$errs" \
        'BEGIN { printf "| %s | %d | %.3f | %.3f | %s | %s |\n", n, c, a / 1000, b / 1000, r, e }'
}
gateway memo-off 0
echo
echo "| scenario | connections | p50 ms | p99 ms | req/s | errors |"
echo "|---|---|---|---|---|---|"
# Memo off: every semantic hit runs the model.
run semantic-model-c1 1 1 'how do i reset my password'
run semantic-model-c32 2 32 'how do i reset my password'
proc_stop memo-off
# Default config: the repeated paraphrase's vector comes from the memo after its first request.
gateway default 4096
run exact-c1 1 1 'How do I reset my password?'
run semantic-memo-c1 1 1 'how do i reset my password'
run exact-c32 2 32 'How do I reset my password?'
run semantic-memo-c32 2 32 'how do i reset my password'
