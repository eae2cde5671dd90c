"""Streams the same chat completion from two base URLs, alternating, and
prints per target, as JSON lines: time to the first content (p50, p90),
the rate of content after it in characters per second (p50: the same
answer either way, so a fair measure of tokens per second even where the
masker's hold-back merges deltas), and the whole call's duration (p50).

Usage: llm_stream_bench.py RUNS MAX_TOKENS LABEL=URL=KEY ...
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse


def one(url, key, max_tokens):
    body = {
        "model": "bench",
        "stream": True,
        "temperature": 0,
        "seed": 7,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
    }
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    start = time.perf_counter()
    first = None
    first_len = 0
    chars = 0
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"authorization": "Bearer " + key, "content-type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise SystemExit(f"{url}: HTTP {r.status}: {r.read()[:300]!r}")
    with r:
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for c in chunk.get("choices", []):
                content = (c.get("delta") or {}).get("content")
                if content:
                    chars += len(content)
                    if first is None:
                        first = time.perf_counter()
                        first_len = len(content)
    end = time.perf_counter()
    ttft = (first or end) - start
    rate = (chars - first_len) / (end - first) if first and end > first else 0.0
    return ttft, rate, end - start


def main():
    runs, max_tokens = int(sys.argv[1]), int(sys.argv[2])
    targets = [t.split("=", 2) for t in sys.argv[3:]]
    results = {label: ([], [], []) for label, _, _ in targets}
    for label, url, key in targets:  # warm up
        one(url, key, 8)
    for _ in range(runs):
        for label, url, key in targets:
            ttft, rate, duration = one(url, key, max_tokens)
            results[label][0].append(ttft)
            results[label][1].append(rate)
            results[label][2].append(duration)
    for label, (ttfts, rates, durations) in results.items():
        q = statistics.quantiles(ttfts, n=10)
        print(json.dumps({
            "target": label,
            "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 2),
            "ttft_p90_ms": round(q[8] * 1000, 2),
            "chars_per_s_p50": round(statistics.median(rates), 1),
            "duration_p50_ms": round(statistics.median(durations) * 1000, 1),
        }))


if __name__ == "__main__":
    main()
