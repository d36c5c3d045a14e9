#!/usr/bin/python3
"""SQLite map / memory map, in alternating pairs (bench/RESULTS.md, run 11).

    /usr/bin/python3 bench/sqlite_ratio.py [BINARY ...] [--pairs N] [--jobs N]

For each pair and each binary given (default build/pyjobd): a fresh server on the
memory store, a fresh one on --store sqlite, each timing one Executor.map of --jobs
trivial jobs after a warm-up. Alternating keeps a changing machine load out of the
ratio better than section 2 of run.py (memory once, first, then SQLite). Prints each
pair and the medians; never fails on a number.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (bench/run.py: Server, timed_map, the client on sys.path)
import trivial  # noqa: E402


def one_map(binary, sqlite, n):
    d = tempfile.mkdtemp(prefix="pyjobd-ratio-")
    srv = bench.Server(binary, extra=("--store", f"sqlite:{d}/jobs.db") if sqlite else ())
    try:
        import pyjobd
        ex = pyjobd.Executor(srv.url)
        bench.timed_map(lambda k: list(ex.map(trivial.inc, range(k))), 200)  # warm up
        rate = bench.timed_map(lambda k: list(ex.map(trivial.inc, range(k))), n)
        ex.shutdown()
        return rate
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="*", default=[os.path.join(bench.ROOT, "build", "pyjobd")])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=20000)
    args = ap.parse_args()
    out = {b: [] for b in args.binaries}
    for i in range(args.pairs):
        for b in args.binaries:
            mem, sql = one_map(b, False, args.jobs), one_map(b, True, args.jobs)
            out[b].append((mem, sql))
            print(f"{b}: memory {mem:8.0f}  sqlite {sql:8.0f} jobs/s  {sql / mem * 100:5.1f} %",
                  flush=True)
    for b, pairs in out.items():
        print(f"{b}: median memory {statistics.median(m for m, _ in pairs):.0f}, sqlite "
              f"{statistics.median(s for _, s in pairs):.0f} jobs/s, median ratio "
              f"{statistics.median(s / m * 100 for m, s in pairs):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
