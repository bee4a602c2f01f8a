"""Python's counterpart of `cargo bench --bench ipc -- segment` (stdlib only).

Prints `python_shared_memory_create_unlink_1mib: <us> us`: the median, over several rounds,
of the per-operation time of multiprocessing.shared_memory.SharedMemory(create=True,
size=1 MiB) followed by close() and unlink(), as the Rust figure
`segment_create_unlink_1mib` does with Segment::create and drop.
"""

import statistics
import sys
import time
from multiprocessing import shared_memory

MIB = 1 << 20
ROUNDS = 31
ITERS = 100
NAME = "python_shared_memory_create_unlink_1mib"


def create_unlink(iters):
    start = time.perf_counter()
    for _ in range(iters):
        shm = shared_memory.SharedMemory(create=True, size=MIB)
        shm.close()
        shm.unlink()
    return (time.perf_counter() - start) / iters


def main():
    # Same selection as `cargo bench --bench ipc -- FILTER...`: substrings of `group/name`.
    filters = [a for a in sys.argv[1:] if not a.startswith("-")]
    if filters and not any(f in "segment/" + NAME for f in filters):
        return 0
    # Warm-up: the first SharedMemory starts Python's resource tracker process.
    create_unlink(ITERS // 4)
    samples = [create_unlink(ITERS) for _ in range(ROUNDS)]
    print(f"{NAME}: {statistics.median(samples) * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
