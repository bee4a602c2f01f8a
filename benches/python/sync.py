"""Python's counterpart of `cargo bench --bench ipc -- sync/` (stdlib only).

Prints, as `name: value unit` (medians of several rounds):
- `python_lock_uncontended: <ns> ns`: multiprocessing.Lock acquire + release, one process
  (vs `mutex_uncontended`);
- `python_value_locked_2p: <M> Mops/s`: 2 processes doing `with v.get_lock(): v.value += 1`
  on a multiprocessing.Value (vs `mutex_contended_2p`);
- `python_semaphore_pingpong_rtt: <us> us`: two multiprocessing.Semaphores ping-ponged
  between two processes (vs `semaphore_pingpong_rtt_default` and `semaphore_pingpong_rtt`);
- `python_event_pingpong_rtt: <us> us`: two multiprocessing.Events (set, wait, clear)
  ping-ponged between two processes (vs `event_pingpong_rtt_default`);
- `python_barrier_2p_round: <us> us`: a multiprocessing.Barrier of 2 parties, one process
  per CPU (vs `barrier_2p_round_default`).
"""

import multiprocessing as mp
import statistics
import sys
import time

from _affinity import pin, unpin


GROUP = "sync/"


def wanted(name):
    filters = [a for a in sys.argv[1:] if not a.startswith("-")]
    return not filters or any(f in GROUP + name for f in filters)


def lock_uncontended(rounds=15, iters=200_000):
    lock = mp.Lock()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            lock.acquire()
            lock.release()
        samples.append((time.perf_counter() - start) / iters)
    return statistics.median(samples) * 1e9


def _incr(v, go, iters):
    go.wait()
    for _ in range(iters):
        with v.get_lock():
            v.value += 1


def value_locked_2p(rounds=3, iters=200_000):
    samples = []
    for _ in range(rounds):
        v = mp.Value("q", 0)
        go = mp.Event()
        procs = [mp.Process(target=_incr, args=(v, go, iters)) for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.05)
        start = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        assert v.value == 2 * iters
        samples.append(2 * iters / elapsed / 1e6)
    return statistics.median(samples)


def _sem_echo(ping, pong, iters):
    pin(1)
    for _ in range(iters):
        ping.acquire()
        pong.release()


def _sem_ask(ping, pong):
    ping.release()
    pong.acquire()


def _event_echo(ping, pong, iters):
    pin(1)
    for _ in range(iters):
        ping.wait()
        ping.clear()
        pong.set()


def _event_ask(ping, pong):
    ping.set()
    pong.wait()
    pong.clear()


def _barrier_echo(barrier, _unused, iters):
    pin(1)
    for _ in range(iters):
        barrier.wait()


def _barrier_ask(barrier, _unused):
    barrier.wait()


def pingpong(make, echo, ask, rounds=7, iters=2000):
    """Median µs per hand-off between this process (CPU 0) and an echo child (CPU 1)."""
    saved = pin(0)
    samples = []
    for _ in range(rounds):
        a, b = make()
        p = mp.Process(target=echo, args=(a, b, iters))
        p.start()
        start = time.perf_counter()
        for _ in range(iters):
            ask(a, b)
        samples.append((time.perf_counter() - start) / iters * 1e6)
        p.join()
    unpin(saved)
    return statistics.median(samples)


def main():
    mp.set_start_method("fork")
    if wanted("python_lock_uncontended"):
        print(f"python_lock_uncontended: {lock_uncontended():.1f} ns")
    if wanted("python_value_locked_2p"):
        print(f"python_value_locked_2p: {value_locked_2p():.3f} Mops/s")
    if wanted("python_semaphore_pingpong_rtt"):
        rtt = pingpong(lambda: (mp.Semaphore(0), mp.Semaphore(0)), _sem_echo, _sem_ask)
        print(f"python_semaphore_pingpong_rtt: {rtt:.2f} us")
    if wanted("python_event_pingpong_rtt"):
        rtt = pingpong(lambda: (mp.Event(), mp.Event()), _event_echo, _event_ask)
        print(f"python_event_pingpong_rtt: {rtt:.2f} us")
    if wanted("python_barrier_2p_round"):
        rtt = pingpong(lambda: (mp.Barrier(2), None), _barrier_echo, _barrier_ask)
        print(f"python_barrier_2p_round: {rtt:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
