"""Python's counterpart of `cargo bench --bench ipc -- fuzz`: the same campaigns, 2 workers.

- python_pebble_fuzz_execs_per_s_crash_only: <execs/s>  pebble ProcessPool, one task per
  input, 1% of inputs kill their worker (SIGSEGV); compare with pool_fuzz_execs_per_s_crash_only
- python_pebble_fuzz_execs_per_s: <execs/s>  the same plus 0.1% hangs, 50 ms timeout
  (pebble kills and replaces the worker); compare with pool_fuzz_execs_per_s
- python_ppe_fuzz_inputs_before_broken: <n> inputs  concurrent.futures.ProcessPoolExecutor on
  the same campaign: how many inputs got a result before the first crash broke the whole
  pool (BrokenProcessPool for every input still pending, and for every later submit)

pebble is on PyPI (`pip install pebble`); without it the pebble figures are skipped. A pebble
campaign that stops making progress (pebble 5.2.3 once left every future pending after its pool's
manager threads had gone) is reported on stderr and its figures skipped, so that the script
always ends: every wait here has a limit.
"""

import concurrent.futures as cf
import os
import signal
import statistics
import sys
import time

TIMEOUT = 0.05


def target(x):
    if x % 1000 == 501:
        while True:
            pass
    if x % 100 == 37:
        os.kill(os.getpid(), signal.SIGSEGV)
    return (x * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF


def crash_only(x):
    if x % 1000 == 501:
        return x
    return target(x)


# No single result of these campaigns takes anywhere near this long: a wait this long means
# pebble stopped.
STUCK = 60.0


class Stuck(Exception):
    pass


def pebble_campaign(fn, n, rounds, timeout):
    from pebble import ProcessPool

    rates = []
    for _ in range(rounds):
        pool = ProcessPool(max_workers=2)
        try:
            start = time.perf_counter()
            futures = [pool.schedule(fn, args=(x,), timeout=timeout) for x in range(n)]
            ok = failed = 0
            for f in futures:
                try:
                    f.result(timeout=STUCK)
                    ok += 1
                except cf.TimeoutError:
                    if not f.done():
                        raise Stuck(f"no result for {STUCK:.0f} s after {ok + failed} of {n}")
                    failed += 1  # the task's own timeout
                except Exception:
                    failed += 1
            rates.append(n / (time.perf_counter() - start))
            assert ok + failed == n
            pool.close()
        finally:
            pool.stop()
            pool.join(timeout=10)
    return statistics.median(rates)


def ppe_campaign(n):
    done = broken = 0
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(target, x) for x in range(n)]
        for f in futures:
            try:
                f.result(timeout=5)
                done += 1
            except cf.process.BrokenProcessPool:
                broken += 1
            except cf.TimeoutError:
                break
    return done, broken


def main():
    try:
        import pebble  # noqa: F401

        crash = pebble_campaign(crash_only, 1000, 3, None)
        print(f"python_pebble_fuzz_execs_per_s_crash_only: {crash:.1f} execs/s")
        mixed = pebble_campaign(target, 1000, 3, TIMEOUT)
        print(f"python_pebble_fuzz_execs_per_s: {mixed:.1f} execs/s")
    except ImportError:
        print("# pebble missing (pip install pebble): python_pebble_fuzz_* skipped", file=sys.stderr)
    except Stuck as e:
        print(f"# pebble stopped making progress ({e}): the remaining python_pebble_fuzz_* skipped", file=sys.stderr)
    done, broken = ppe_campaign(1000)
    print(f"python_ppe_fuzz_inputs_before_broken: {done} inputs")
    print(f"# ProcessPoolExecutor: {done} results, then {broken} BrokenProcessPool errors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
