#!/usr/bin/env python3
"""Load driver for scripts/soak.sh: closed-loop chat requests at a fixed concurrency over
keep-alive HTTP/1.1 connections (plain asyncio streams: exact error counts, no client library in
the way), a mix of repeated prompts (cache hits) and unique ones (misses).

  load   : runs for --seconds; prints one JSON summary line (requests, errors by cause, cache
           outcomes, p50/p99, RSS samples of --rss-pid). With --kill-pid/--kill-after it sends
           SIGKILL to that process mid-load and writes every ACKNOWLEDGED answer (200 with the
           whole body received) to --acks as JSON lines.
  verify : against the restarted gateway, checks that the spend report counts every acknowledged
           request and its cost, every acknowledged request id is in the audit log, and every
           acknowledged miss is now a cache hit. Prints PASS/FAIL per check; exit 1 on a FAIL.

Standard library only (runs with any python3 >= 3.8).
"""
import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import urllib.parse

WORDS = (
    "apple river quantum ledger violet canyon piano harbor cobalt meadow lantern falcon "
    "granite orbit saffron thimble velvet walnut zephyr basalt cinder dune ember fjord "
    "glacier hazel iris jasper kelp lilac marble nectar onyx pepper quartz raven sierra "
    "tundra umber vapor willow yarrow zinc anchor bramble cedar delta eagle fennel grove "
    "heron indigo juniper kestrel lagoon mango nutmeg oak pebble quill reef sage tide"
).split()

TOPICS = (
    "Summarise the plot of {} in three sentences.",
    "Give me a recipe that uses {} and rice.",
    "Explain how {} works to a ten-year-old.",
    "Write a short poem about {}.",
    "What are the pros and cons of {} for a small business?",
)


def pool_prompt(i):
    """Prompt number i of the repeated pool: stable across runs."""
    rng = random.Random(i)
    return TOPICS[i % len(TOPICS)].format(" ".join(rng.sample(WORDS, 3))) + f" (pool {i})"


def unique_prompt(rng, n):
    """A prompt nobody asked before: random words plus a counter."""
    return "Tell me something about " + " ".join(rng.sample(WORDS, 10)) + f" #{n}-{rng.getrandbits(48):x}"


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None

    async def request(self, method, path, key, body=None):
        """Returns (status, headers dict lower-case, body bytes); raises on socket errors."""
        if self.w is None:
            await self.open()
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        self.w.write(head + data)
        await self.w.drain()
        line = await self.r.readuntil(b"\r\n")
        status = int(line.split(b" ", 2)[1])
        headers = {}
        while True:
            line = await self.r.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            payload = await self.r.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.r.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            payload = b"".join(parts)
        else:
            payload = await self.r.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, payload


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def load(a):
    u = urllib.parse.urlparse(a.url)
    rng = random.Random(a.seed)
    stats = {
        "requests": 0, "ok": 0, "non_2xx": 0, "socket_errors": 0, "errors_after_kill": 0,
        "outcomes": {}, "status_codes": {}, "error_kinds": {},
    }
    latencies = []
    acks = open(a.acks, "w") if a.acks else None
    counter = [0]
    killed_at = [None]
    fixed = json.load(open(a.body_file)) if a.body_file else None
    start = time.monotonic()
    deadline = start + a.seconds
    rss = []

    async def worker(wid):
        conn = Conn(u.hostname, u.port)
        wrng = random.Random(rng.getrandbits(64))
        while time.monotonic() < deadline and not (killed_at[0] and time.monotonic() > killed_at[0] + 1):
            counter[0] += 1
            if wrng.random() < a.hit_ratio:
                prompt = pool_prompt(wrng.randrange(a.pool))
            else:
                prompt = unique_prompt(wrng, counter[0])
            body = fixed or {"model": a.model, "messages": [{"role": "user", "content": prompt}]}
            t0 = time.monotonic()
            try:
                status, headers, payload = await asyncio.wait_for(
                    conn.request("POST", "/v1/chat/completions", a.key, body), a.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError, IndexError) as e:
                conn.close()
                if killed_at[0] is not None:
                    stats["errors_after_kill"] += 1
                    await asyncio.sleep(0.05)
                else:
                    stats["requests"] += 1
                    stats["socket_errors"] += 1
                    kind = type(e).__name__
                    stats["error_kinds"][kind] = stats["error_kinds"].get(kind, 0) + 1
                continue
            dt = time.monotonic() - t0
            stats["requests"] += 1
            code = str(status)
            stats["status_codes"][code] = stats["status_codes"].get(code, 0) + 1
            if 200 <= status < 300:
                stats["ok"] += 1
                outcome = headers.get("x-sluice-cache", "none")
                stats["outcomes"][outcome] = stats["outcomes"].get(outcome, 0) + 1
                if t0 - start >= a.warmup:
                    latencies.append(dt)
                if acks is not None:
                    acks.write(json.dumps({
                        "request_id": headers.get("x-request-id"),
                        "prompt": prompt,
                        "key": "master",
                        "cache": outcome,
                        "cost_usd": float(headers.get("x-sluice-cost-usd", "0") or 0),
                        "entry": headers.get("x-sluice-cache-entry"),
                    }) + "\n")
            else:
                stats["non_2xx"] += 1
                if stats["non_2xx"] <= 5:
                    print(f"driver: {status}: {payload[:300]!r}", file=sys.stderr)
        conn.close()

    async def sampler():
        while time.monotonic() < deadline and killed_at[0] is None:
            kib = rss_kib(a.rss_pid)
            if kib is not None:
                rss.append({"t": round(time.monotonic() - start, 1), "rss_kib": kib})
            await asyncio.sleep(a.rss_every)

    async def killer():
        await asyncio.sleep(a.kill_after)
        os.kill(a.kill_pid, signal.SIGKILL)
        killed_at[0] = time.monotonic()

    tasks = [asyncio.ensure_future(worker(i)) for i in range(a.concurrency)]
    extra = []
    if a.rss_pid:
        extra.append(asyncio.ensure_future(sampler()))
    if a.kill_pid:
        extra.append(asyncio.ensure_future(killer()))
    await asyncio.gather(*tasks)
    for t in extra:
        t.cancel()
    elapsed = time.monotonic() - start
    if acks is not None:
        acks.close()
    latencies.sort()
    hits = sum(v for k, v in stats["outcomes"].items() if k.startswith("hit"))
    stats.update({
        "seconds": round(elapsed, 1),
        "rps": round(stats["requests"] / elapsed, 1) if elapsed else 0,
        "errors": stats["non_2xx"] + stats["socket_errors"],
        "hit_ratio": round(hits / stats["ok"], 4) if stats["ok"] else 0,
        "p50_ms": round(percentile(latencies, 50) * 1e3, 3),
        "p99_ms": round(percentile(latencies, 99) * 1e3, 3),
        "rss": rss,
        "killed": killed_at[0] is not None,
    })
    print(json.dumps(stats))


async def verify(a):
    u = urllib.parse.urlparse(a.url)
    acked = [json.loads(l) for l in open(a.acks)]
    conn = Conn(u.hostname, u.port)
    failed = False

    def report(name, ok, detail):
        nonlocal failed
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")

    # 1. Spend, before any new request adds to it.
    status, _, body = await conn.request("GET", "/admin/spend?group_by=key", a.key)
    rows = json.loads(body).get("rows", []) if status == 200 else []
    row = next((r for r in rows if r.get("key") == "master"), {})
    n, cost = len(acked), sum(x["cost_usd"] for x in acked)
    hits = sum(1 for x in acked if x["cache"].startswith("hit"))
    got_n, got_cost, got_hits = row.get("requests", 0), row.get("spend_usd", 0.0), row.get("cache_hits", 0)
    report("spend requests", got_n >= n, f"report {got_n} >= acknowledged {n} (the excess: requests in flight at the kill)")
    report("spend cache hits", got_hits >= hits, f"report {got_hits} >= acknowledged {hits}")
    report("spend usd", got_cost + 1e-9 >= cost, f"report {got_cost:.8f} >= acknowledged {cost:.8f}")

    # 2. Audit: page through every request record.
    seen, cursor, pages = set(), None, 0
    while True:
        path = "/admin/audit?kind=request&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, _, body = await conn.request("GET", path, a.key)
        if status != 200:
            report("audit query", False, f"{status} {body[:200]!r}")
            break
        page = json.loads(body)
        pages += 1
        for r in page["data"]:
            seen.add(r["request"]["request_id"])
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    missing = [x["request_id"] for x in acked if x["request_id"] not in seen]
    report("audit records", not missing,
           f"{n - len(missing)} of {n} acknowledged request ids in the log ({len(seen)} request records, {pages} pages)"
           + (f"; missing e.g. {missing[:3]}" if missing else ""))

    # 3. Cache: every acknowledged miss is a hit when asked again (distinct prompts only).
    misses = list({x["prompt"]: x for x in acked if x["cache"] == "miss"}.values())
    sem = asyncio.Semaphore(a.concurrency)
    bad = []

    async def reask(x, c):
        body = {"model": a.model, "messages": [{"role": "user", "content": x["prompt"]}]}
        status, headers, _ = await c.request("POST", "/v1/chat/completions", a.key, body)
        outcome = headers.get("x-sluice-cache", "none")
        if status != 200 or not outcome.startswith("hit"):
            bad.append((x["prompt"][:60], status, outcome))

    conns = [Conn(u.hostname, u.port) for _ in range(a.concurrency)]

    async def lane(i):
        for x in misses[i::a.concurrency]:
            await reask(x, conns[i])

    await asyncio.gather(*(lane(i) for i in range(a.concurrency)))
    for c in conns:
        c.close()
    report("cache entries", not bad,
           f"{len(misses) - len(bad)} of {len(misses)} acknowledged misses answered from the cache after the restart"
           + (f"; e.g. {bad[:3]}" if bad else ""))
    conn.close()
    sys.exit(1 if failed else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["load", "verify"])
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--model", default="soak")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--warmup", type=float, default=0, help="seconds not counted in latency")
    p.add_argument("--hit-ratio", type=float, default=0.5, help="share of prompts from the pool")
    p.add_argument("--pool", type=int, default=500, help="repeated prompts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--rss-pid", type=int, default=0)
    p.add_argument("--rss-every", type=float, default=10)
    p.add_argument("--kill-pid", type=int, default=0)
    p.add_argument("--kill-after", type=float, default=30)
    p.add_argument("--body-file", help="send this JSON body every time (latency runs)")
    p.add_argument("--acks", help="JSON lines of acknowledged answers (written by load, read by verify)")
    a = p.parse_args()
    asyncio.run(load(a) if a.mode == "load" else verify(a))


if __name__ == "__main__":
    main()
