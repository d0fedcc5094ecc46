#!/usr/bin/env python3
"""How fast this disk makes small writes durable, one writer against several at once.

    python3 scripts/flush_bench.py [DIR]   # DIR: a folder on the disk to test (default: .)

Each writer does what the ledger journal does per batch: a 600-byte `pwrite` into a
preallocated 4 MiB file and an `fdatasync`, 1,500 times. Printed per run: flushes a second
(all writers together) and the p50 / p90 / p99 of one write + flush. It answers whether two
flushes in flight at once would shorten a request's wait (see docs/GATEWAY.md, Load). The file
is removed afterwards. Nothing here asserts a time.

Then one writer paced at 1,000 writes a second (a write + flush, then a sleep to the next
millisecond), as the journal runs under the gateway benchmark's 1,000 requests/s. Between two
flushes the machine is idle: on a virtual machine a flush then often completes to a halted
vCPU, and its tail is the wake-up's, not the disk's. The closed-loop runs above keep the vCPU
busy and show the disk's own speed; the paced run shows what a request at 1,000 req/s waits.
"""
import contextlib
import os
import sys
import threading
import time

SIZE = 4 << 20
N = 1500


@contextlib.contextmanager
def scratch(folder, name):
    """A preallocated SIZE-byte file in `folder`, flushed once, open for writing; removed after."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, b"\0" * SIZE)
        os.fsync(fd)
        yield fd
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    with scratch(folder, "flush_bench.tmp") as fd:
        for threads in (1, 2, 4, 1, 2):
            run(fd, threads)
        for _ in range(2):
            paced(fd, 1000)


def worker(fd, base, out):
    buf = os.urandom(600)
    off = base
    for _ in range(N):
        t = time.perf_counter()
        os.pwrite(fd, buf, off)
        os.fdatasync(fd)
        out.append(time.perf_counter() - t)
        off = (off + 8192) % SIZE


def quantiles(lat):
    lat = sorted(lat)

    def q(p):
        return lat[int(p * len(lat)) - 1] * 1000

    return f"p50 {q(.5):.3f} ms  p90 {q(.9):.3f} ms  p99 {q(.99):.3f} ms  p99.9 {q(.999):.3f} ms"


def paced(fd, rate):
    buf = os.urandom(600)
    period = 1.0 / rate
    lat, off = [], 0
    due = time.perf_counter()
    for _ in range(3 * N):
        t = time.perf_counter()
        os.pwrite(fd, buf, off)
        os.fdatasync(fd)
        lat.append(time.perf_counter() - t)
        off = (off + 8192) % SIZE
        due += period
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    print(f"paced at {rate}/s: {quantiles(lat)}")


def run(fd, threads):
    outs = [[] for _ in range(threads)]
    ts = [threading.Thread(target=worker, args=(fd, k * 4096, outs[k])) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = [v for o in outs for v in o]
    print(f"writers {threads}: {len(lat) / elapsed:7.0f} flushes/s  {quantiles(lat)}")


if __name__ == "__main__":
    main()
