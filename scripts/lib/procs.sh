# Shared by benchmark/soak scripts: start a server in the background, read the address it prints,
# and stop everything at exit. Source it after setting OUT (a directory for logs and pid files).
#
#   proc_start NAME PATTERN CMD...  starts CMD, prints the http://ADDR from its first stdout line
#                                   "PATTERN http://ADDR"; pid in $OUT/NAME.pid
#   proc_pid NAME                   the pid of NAME
#   proc_stop NAME [SIGNAL]         signals NAME (default TERM) and waits up to 30 s for it to exit
#   proc_stop_all                   proc_stop for every NAME still running (use as an EXIT trap)

proc_die() { echo "${0##*/}: error: $*" >&2; exit 1; }

proc_start() {
    local name="$1" pattern="$2"; shift 2
    : >"$OUT/$name.stdout" # exists before the first read below, however the start is scheduled
    "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" </dev/null &
    local pid=$!
    echo "$pid" >"$OUT/$name.pid"
    local addr=""
    for _ in $(seq 1 1200); do
        addr="$(sed -n "s|^$pattern \(http://[0-9.:]*\).*|\1|p" "$OUT/$name.stdout" | head -n 1)"
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$OUT/$name.stderr" >&2; proc_die "$name exited at start"; }
        sleep 0.1
    done
    [ -n "$addr" ] || proc_die "$name printed no listening line"
    echo "$addr"
}

proc_pid() { cat "$OUT/$1.pid"; }

proc_stop() {
    local f="$OUT/$1.pid" p
    [ -f "$f" ] || return 0
    p="$(cat "$f")"
    kill -"${2:-TERM}" "$p" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    wait "$p" 2>/dev/null || true
    rm -f "$f"
}

proc_stop_all() {
    local f
    for f in "$OUT"/*.pid; do
        [ -f "$f" ] || continue
        f="${f##*/}"
        proc_stop "${f%.pid}"
    done
}
