"""CPU pinning shared by the ping-pong benchmarks (not a benchmark itself)."""

import os


def pin(cpu):
    """Pin this process to `cpu` (as the Rust ping-pong benchmarks pin parent and child to
    CPUs 0 and 1); returns the previous mask. No-op on a one-CPU machine."""
    saved = os.sched_getaffinity(0)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})
    return saved


def unpin(saved):
    """Restore a mask returned by `pin`."""
    os.sched_setaffinity(0, saved)
