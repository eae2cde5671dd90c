"""Streams the same chat completion from two base URLs, alternating, and
prints per target: time to the first content delta (p50, p90) and content
deltas per second after it (p50), as JSON lines.

Usage: llm_stream_bench.py RUNS MAX_TOKENS LABEL=URL=KEY ...
"""

import json
import statistics
import sys
import time

import httpx


def one(client, url, key, max_tokens):
    body = {
        "model": "bench",
        "stream": True,
        "temperature": 0,
        "seed": 7,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
    }
    start = time.perf_counter()
    first = None
    deltas = 0
    with client.stream("POST", url + "/v1/chat/completions", json=body,
                       headers={"authorization": "Bearer " + key}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for c in chunk.get("choices", []):
                if (c.get("delta") or {}).get("content"):
                    deltas += 1
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    ttft = (first or end) - start
    rate = (deltas - 1) / (end - first) if first and end > first and deltas > 1 else 0.0
    return ttft, rate


def main():
    runs, max_tokens = int(sys.argv[1]), int(sys.argv[2])
    targets = [t.split("=", 2) for t in sys.argv[3:]]
    results = {label: ([], []) for label, _, _ in targets}
    with httpx.Client(timeout=300) as client:
        for label, url, key in targets:  # warm up
            one(client, url, key, 8)
        for _ in range(runs):
            for label, url, key in targets:
                ttft, rate = one(client, url, key, max_tokens)
                results[label][0].append(ttft)
                results[label][1].append(rate)
    for label, (ttfts, rates) in results.items():
        q = statistics.quantiles(ttfts, n=10)
        print(json.dumps({
            "target": label,
            "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 2),
            "ttft_p90_ms": round(q[8] * 1000, 2),
            "deltas_per_s_p50": round(statistics.median(rates), 2),
        }))


if __name__ == "__main__":
    main()
