#!/usr/bin/env python3
"""The disk's own stalls: an 8 KiB write and fdatasync at a fixed rate, as a WAL flush is.

Usage: scripts/bench/fsync_probe.py LABEL SECONDS RATE DIR >>RESULTS.jsonl

Writes one JSON record: the latency of every fdatasync (p50, p99, max), the slowest of each
second, and how many seconds had one over STALL_MS. Run alone it is the disk's baseline; run
beside a fixed-rate load it tells which of that load's slow seconds were the disk's.
"""
import json
import os
import sys
import time

STALL_MS = 20.0
BLOCK = b"\0" * 8192
BLOCKS = 128  # rewritten in turn: a 1 MiB file, as a WAL segment is written in place


def main(label, seconds, rate, directory):
    path = os.path.join(directory, f"fsync-probe.{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        latencies, per_second = probe(fd, seconds, rate)
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(json.dumps({
        "label": label,
        "rate": rate,
        "seconds": seconds,
        "fsyncs": len(latencies),
        "fsync_ms": {"p50": at(0.5), "p99": at(0.99), "max": latencies[-1]},
        "slowest_per_second_ms": per_second,
        "stalled_seconds": sum(slowest > STALL_MS for slowest in per_second),
        "stall_ms": STALL_MS,
    }))


def probe(fd, seconds, rate):
    """Latencies (ms) of every fdatasync, and the slowest of each second."""
    start = time.monotonic()
    latencies, per_second = [], [0.0] * int(seconds)
    n = 0
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        began = time.monotonic()
        os.pwrite(fd, BLOCK, (n % BLOCKS) * len(BLOCK))
        os.fdatasync(fd)
        took = (time.monotonic() - began) * 1000
        latencies.append(took)
        second = int(due - start)
        per_second[second] = max(per_second[second], took)
        n += 1
    return latencies, [round(ms, 2) for ms in per_second]


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip())
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
