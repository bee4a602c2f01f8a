"""Python's counterpart of `cargo bench --bench ipc -- queue` (stdlib only).

Prints, each the median over several rounds:

- `python_queue_8b_1to1: <M> Mmsg/s`: multiprocessing.Queue, 8-byte `bytes` messages, this
  process puts, one child process gets (compare with `queue_8b_1to1`);
- `python_queue_1mib_1to1: <GB/s> GB/s`: the same with 1 MiB `bytes` messages (compare with
  `queue_1mib_1to1`);
- `python_pipe_rtt: <us> us`: multiprocessing.Pipe round trip of an 8-byte message to an
  echoing child (compare with `pipe_rtt_default` and `pipe_rtt`).

Takes the same name filters as the Rust harness (`queue`, `pipe_rtt`).
"""

import multiprocessing as mp
import statistics
import sys
import time

from _affinity import pin, unpin


MIB = 1 << 20
GROUP = "queue/"


def wanted(name):
    filters = [a for a in sys.argv[1:] if not a.startswith("-")]
    return not filters or any(f in GROUP + name for f in filters)


def consumer(q, done, n, rounds):
    for _ in range(rounds):
        for _ in range(n):
            q.get()
        done.put(True)


def throughput(size, n, rounds):
    """Messages (or bytes) per second through a Queue: one sample per round."""
    q = mp.Queue(maxsize=1024)
    done = mp.Queue()
    p = mp.Process(target=consumer, args=(q, done, n, rounds + 1))
    p.start()
    msg = bytes(size)
    samples = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(n):
            q.put(msg)
        done.get()
        elapsed = time.perf_counter() - start
        if r > 0:
            samples.append(n / elapsed)
    p.join()
    return statistics.median(samples)


def echo(conn):
    pin(1)
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def pipe_rtt(iters, rounds):
    saved = pin(0)
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b,))
    p.start()
    b.close()
    msg = bytes(8)
    samples = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(iters):
            a.send_bytes(msg)
            a.recv_bytes()
        if r > 0:
            samples.append((time.perf_counter() - start) / iters)
    a.send_bytes(b"")
    p.join()
    unpin(saved)
    return statistics.median(samples)


def main():
    ctx = mp.get_start_method(allow_none=True)
    if ctx is None:
        mp.set_start_method("fork")
    if wanted("python_queue_8b_1to1"):
        rate = throughput(8, 100_000, 5)
        print(f"python_queue_8b_1to1: {rate / 1e6:.3f} Mmsg/s")
    if wanted("python_queue_1mib_1to1"):
        rate = throughput(MIB, 200, 3)
        print(f"python_queue_1mib_1to1: {rate * MIB / 1e9:.3f} GB/s")
    if wanted("python_pipe_rtt"):
        print(f"python_pipe_rtt: {pipe_rtt(2000, 5) * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
