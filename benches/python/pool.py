"""Python's counterpart of `cargo bench --bench ipc -- pool` (stdlib; numpy for the sums).

Prints, as medians of several rounds, with the fork start method and 2 workers:

- python_pool_map_chunksize1: <tasks/s> tasks/s   Pool.map(f, range(N), chunksize=1)
- python_pool_apply_async_rtt: <us> us            apply_async(f, (x,)).get(), one at a time
- python_pool_startup_2: <ms> ms                  Pool(2) and the first apply() result
- python_pool_sum_512mib_2w_pickled: <GB/s> GB/s  Pool.map(np.sum, two halves): chunks pickled
- python_pool_sum_512mib_2w_shm: <GB/s> GB/s      workers sum halves of a SharedMemory in place

(the last two only when numpy is installed). Every segment is closed and unlinked.
"""

import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import shared_memory

ELEMS = 64 << 20  # 512 MiB of float64


def inc(x):
    return x + 1


def map_chunksize1(ctx):
    n = 50_000
    with ctx.Pool(2) as pool:
        pool.map(inc, range(n // 10), chunksize=1)
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            pool.map(inc, range(n), chunksize=1)
            rates.append(n / (time.perf_counter() - start))
    print(f"python_pool_map_chunksize1: {statistics.median(rates):.1f} tasks/s")


def rtt(ctx):
    iters = 500
    with ctx.Pool(2) as pool:
        per = []
        for _ in range(7):
            start = time.perf_counter()
            for i in range(iters):
                pool.apply_async(inc, (i,)).get()
            per.append((time.perf_counter() - start) / iters * 1e6)
    print(f"python_pool_apply_async_rtt: {statistics.median(per[1:]):.2f} us")


def startup(ctx):
    ms = []
    for _ in range(11):
        start = time.perf_counter()
        pool = ctx.Pool(2)
        pool.apply(inc, (1,))
        ms.append((time.perf_counter() - start) * 1e3)
        pool.terminate()
        pool.join()
    print(f"python_pool_startup_2: {statistics.median(ms[1:]):.2f} ms")


_shm = None


def _attach(name):
    global _shm
    _shm = shared_memory.SharedMemory(name=name)


def _sum_half(k):
    import numpy as np

    a = np.ndarray((ELEMS,), dtype=np.float64, buffer=_shm.buf)
    half = ELEMS // 2
    return float(a[k * half:(k + 1) * half].sum())


def _np_sum(x):
    return float(x.sum())


def sums(ctx):
    try:
        import numpy as np
    except ImportError:
        print("# numpy missing: python_pool_sum_512mib_* skipped", file=sys.stderr)
        return
    nbytes = ELEMS * 8
    shm = shared_memory.SharedMemory(create=True, size=nbytes)
    try:
        a = np.ndarray((ELEMS,), dtype=np.float64, buffer=shm.buf)
        a[:] = np.arange(ELEMS) % 1000
        halves = [a[: ELEMS // 2], a[ELEMS // 2:]]
        with ctx.Pool(2) as pool:
            pickled = []
            for _ in range(3):
                start = time.perf_counter()
                pool.map(_np_sum, halves, chunksize=1)
                pickled.append(nbytes / (time.perf_counter() - start) / 1e9)
        print(f"python_pool_sum_512mib_2w_pickled: {statistics.median(pickled):.3f} GB/s")
        with ctx.Pool(2, initializer=_attach, initargs=(shm.name,)) as pool:
            pool.map(_sum_half, [0, 1], chunksize=1)
            inplace = []
            for _ in range(9):
                start = time.perf_counter()
                pool.map(_sum_half, [0, 1], chunksize=1)
                inplace.append(nbytes / (time.perf_counter() - start) / 1e9)
        print(f"python_pool_sum_512mib_2w_shm: {statistics.median(inplace):.2f} GB/s")
        del a, halves
    finally:
        shm.close()
        shm.unlink()


def main():
    ctx = mp.get_context("fork")
    map_chunksize1(ctx)
    rtt(ctx)
    startup(ctx)
    sums(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
