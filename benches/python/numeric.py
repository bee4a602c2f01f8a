"""Python's counterpart of `cargo bench --features ndarray,serde --bench ipc -- numeric`.

- python_pool_map_serde_small: <tasks/s> tasks/s   Pool.map(f, items) of a small object
  {name: str, xs: 8 floats} -> (name, sum of squares), fork, 2 workers, default chunksize
  (items and results pickled), as `pool_map_serde_small` does with serde/postcard.
"""

import multiprocessing as mp
import statistics
import sys
import time


class Small:
    __slots__ = ("name", "xs")

    def __init__(self, name, xs):
        self.name, self.xs = name, xs


def norm(s):
    return s.name, sum(x * x for x in s.xs)


def map_small(ctx):
    n = 200_000
    with ctx.Pool(2) as pool:
        pool.map(norm, [Small(f"item{i}", [float(i)] * 8) for i in range(n // 4)])
        rates = []
        for _ in range(5):
            items = [Small(f"item{i}", [float(i)] * 8) for i in range(n)]
            start = time.perf_counter()
            out = pool.map(norm, items)
            rates.append(n / (time.perf_counter() - start))
            assert len(out) == n
    print(f"python_pool_map_serde_small: {statistics.median(rates):.1f} tasks/s")


def main():
    wanted = sys.argv[1:]
    if wanted and not any(w in "numeric python_pool_map_serde_small" for w in wanted):
        return 0
    map_small(mp.get_context("fork"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
