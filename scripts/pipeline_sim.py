#!/usr/bin/env python3
"""Would a second journal flush in flight shorten a ledger append's wait? A simulation on the disk.

    python3 scripts/pipeline_sim.py [ROUNDS] [DIR]   # DIR: a folder on the disk to test (default: .)

Appends arrive at 1,000 a second (evenly spaced, then as a Poisson stream), 6,000 per run. One
writer or two take whatever waits, write it (a 600-byte frame each, as the ledger journal does)
under one lock and `fdatasync` outside it; a batch is acknowledged once its flush and every
earlier batch's are done (in order, as the journal must). Printed per run: the wait from an
append's arrival to its acknowledgement, p50 / p90 / p99 / p99.9, and the number of flushes.
Python's own overhead (about 0.1 ms) is in every figure alike. Nothing here asserts a time;
docs/GATEWAY.md (the eighth session) has what it showed.
"""
import os
import queue
import random
import sys
import threading
import time

from flush_bench import SIZE, quantiles, scratch  # the same file, size and percentiles

FRAME = 600
N = 6000
RATE = 1000


class Journal:
    """A preallocated file written by `writers` threads: each takes what waits, writes it under
    the lock (the next offset, the next batch number) and flushes outside it."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()
        self.offset = 0
        self.seq = 0
        self.done = {}  # batch number -> (arrival times, flush end)

    def writer(self, waiting):
        frame = os.urandom(FRAME)
        while True:
            first = waiting.get()
            if first is None:
                waiting.put(None)  # for the other writer
                return
            with self.lock:
                batch = [first]
                while True:
                    try:
                        more = waiting.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        waiting.put(None)
                        break
                    batch.append(more)
                os.pwrite(self.fd, frame * len(batch), self.offset)
                self.offset = (self.offset + FRAME * len(batch)) % (SIZE - 65536)
                seq = self.seq
                self.seq += 1
            os.fdatasync(self.fd)
            self.done[seq] = (batch, time.perf_counter())

    def waits(self):
        """Each append's wait: a batch is acknowledged once it and every earlier one are done."""
        out, acked = [], 0.0
        for seq in sorted(self.done):
            batch, end = self.done[seq]
            acked = max(acked, end)
            out += [acked - arrival for arrival in batch]
        return out


def run(fd, writers, poisson):
    journal = Journal(fd)
    waiting = queue.Queue()
    threads = [threading.Thread(target=journal.writer, args=(waiting,)) for _ in range(writers)]
    for t in threads:
        t.start()
    due = time.perf_counter() + 0.01
    for _ in range(N):
        while (pause := due - time.perf_counter()) > 0:
            time.sleep(pause if pause > 0.0002 else 0)
        waiting.put(due)  # the time it was due: the wait counts from there
        due += random.expovariate(RATE) if poisson else 1.0 / RATE
    waiting.put(None)
    for t in threads:
        t.join()
    arrivals = "poisson" if poisson else "constant"
    print(f"writers {writers} {arrivals}: {quantiles(journal.waits())}  flushes {len(journal.done)}")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    folder = sys.argv[2] if len(sys.argv) > 2 else "."
    with scratch(folder, "pipeline_sim.tmp") as fd:
        for _ in range(rounds):
            for poisson in (False, True):
                for writers in (1, 2):
                    run(fd, writers, poisson)


if __name__ == "__main__":
    main()
