"""Python's counterpart of `cargo bench --bench ipc -- dict` (stdlib only).

Two processes each add 1 to d['count'] N times on a `multiprocessing.Manager().dict()`:

- `python_manager_dict_update_locked: <k> kops/s`: `with lock: d['count'] += 1`, the lock a
  `Manager().Lock()` (exact; compare with the Rust figure `dict_update_2p_one_key`, which
  does one million updates per process where this does a few thousand);
- `python_manager_dict_update_unlocked: <k> kops/s`: `d['count'] += 1` alone, a get and a
  set that other processes interleave with;
- `python_manager_dict_update_unlocked_lost: <pct> %`: the share of those updates lost.

Each figure is the median over several rounds; every access is a round trip to the
manager's server process, which is what makes it slow.
"""

import os
import sys

# Run as `python3 benches/python/dict.py`, this directory comes first on sys.path: keep a
# sibling script named like a stdlib module from shadowing the standard library module the manager imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

N = 2000
ROUNDS = 3


def worker(d, lock, barrier, n, locked):
    barrier.wait()
    if locked:
        for _ in range(n):
            with lock:
                d["count"] += 1
    else:
        for _ in range(n):
            d["count"] += 1


def race(manager, locked):
    """Seconds for 2 x N updates, and the final count."""
    d = manager.dict()
    d["count"] = 0
    lock = manager.Lock()
    barrier = mp.Barrier(3)
    procs = [mp.Process(target=worker, args=(d, lock, barrier, N, locked)) for _ in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"worker failed with exit code {p.exitcode}")
    return time.perf_counter() - start, d["count"]


def main():
    expected = 2 * N
    with mp.Manager() as manager:
        locked, unlocked, lost = [], [], []
        for _ in range(ROUNDS):
            seconds, count = race(manager, True)
            if count != expected:
                raise RuntimeError(f"locked count {count}, expected {expected}")
            locked.append(expected / seconds / 1e3)
            seconds, count = race(manager, False)
            unlocked.append(expected / seconds / 1e3)
            lost.append(100.0 * (expected - count) / expected)
    print(f"python_manager_dict_update_locked: {statistics.median(locked):.2f} kops/s")
    print(f"python_manager_dict_update_unlocked: {statistics.median(unlocked):.2f} kops/s")
    print(f"python_manager_dict_update_unlocked_lost: {statistics.median(lost):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
