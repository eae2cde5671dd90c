#!/usr/bin/env python3
"""What one synced write costs on the disk under a directory: the floor for
any durable record there.

  fsync-limits.py DIR [ROUNDS]

Prints the median and p99 (µs) of write(1 KiB) + fdatasync:
  append     the file grows with each write (what a fresh log file pays: the
             file system must also make the new size durable)
  overwrite  the same writes over a file already written and synced (what
             a preallocated or recycled log file pays)
"""
import os
import statistics
import sys
import tempfile
import time

BLOCK = 1024


def timed_writes(fd, rounds, offset_of):
    data = os.urandom(BLOCK)
    samples = []
    for i in range(rounds):
        start = time.perf_counter_ns()
        os.pwrite(fd, data, offset_of(i))
        os.fdatasync(fd)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main():
    directory = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory(dir=directory) as work:
        path = os.path.join(work, "probe")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            append = timed_writes(fd, rounds, lambda i: i * BLOCK)
            # Now every block exists and is synced: write them again.
            overwrite = timed_writes(fd, rounds, lambda i: i * BLOCK)
        finally:
            os.close(fd)
    for name, (p50, p99) in (("append", append), ("overwrite", overwrite)):
        print(f"fdatasync {name:<9} 1 KiB: p50 {p50:6.0f} µs  p99 {p99:6.0f} µs")


if __name__ == "__main__":
    main()
