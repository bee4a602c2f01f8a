"""Turn `name: value unit` lines from `cargo bench --bench ipc` and `benches/python/*.py`
into BENCHMARKS.md. Usage: python3 benches/compare.py RUST_OUTPUT PYTHON_OUTPUT"""

import datetime
import os
import platform
import re
import subprocess
import sys

LINE = re.compile(r"^([A-Za-z0-9_]+): ([-+0-9.eE]+) (\S+)\s*$")
# Units where a larger number is better; for all others (times) smaller is better.
HIGHER_IS_BETTER = {"Mops/s", "Mmsg/s", "GB/s", "tasks/s", "ops/s", "kops/s", "steps/s", "M/s", "x", "execs/s"}

# figure, its OS floor (same run), its Python counterpart, what it measures.
ROWS = [
    ("segment_create_unlink_1mib", "floor_shm_open_unlink_1mib", "python_shared_memory_create_unlink_1mib",
     "create + map + unmap + unlink a 1 MiB segment (not reserving)"),
    ("segment_create_unlink_1mib", "floor_shm_open_touch_unlink_1mib", None,
     "the same, against a floor that also writes one page (as a header does)"),
    ("segment_create_unlink_1mib_reserved", "floor_shm_open_unlink_1mib", "python_shared_memory_create_unlink_1mib",
     "the same, memory reserved with posix_fallocate"),
    ("mutex_uncontended", "floor_pthread_robust_uncontended", "python_lock_uncontended",
     "lock + unlock, one process"),
    ("mutex_contended_2p", "floor_pthread_robust_contended_2p", "python_value_locked_2p",
     "2 processes: lock; counter += 1; unlock"),
    ("semaphore_pingpong_rtt_default", "floor_futex_pingpong_rtt", "python_semaphore_pingpong_rtt",
     "semaphore ping-pong round trip, default wait (adaptive spin, then park)"),
    ("semaphore_pingpong_rtt", "floor_futex_pingpong_rtt", "python_semaphore_pingpong_rtt",
     "semaphore ping-pong round trip, WaitPolicy::Park"),
    ("semaphore_pingpong_rtt_oversubscribed", "floor_futex_pingpong_rtt_oversubscribed", None,
     "4 semaphore ping-pong pairs at once on 2 CPUs, default wait: round trip of one pair"),
    ("event_pingpong_rtt_default", "floor_futex_pingpong_rtt", "python_event_pingpong_rtt",
     "Event ping-pong round trip (set, wait, clear), default wait"),
    ("barrier_2p_round_default", None, "python_barrier_2p_round", "Barrier of 2 parties, one round, default wait"),
    ("queue_8b_1to1", None, "python_queue_8b_1to1", "8-byte messages, 1 producer -> 1 consumer process"),
    ("queue_1mib_1to1", "floor_memcpy_1mib", "python_queue_1mib_1to1", "1 MiB messages"),
    ("pipe_rtt_default", "floor_futex_pingpong_rtt_beside_pipe", "python_pipe_rtt",
     "Pipe round trip, default wait (adaptive spin, then park)"),
    ("pipe_rtt", "floor_futex_pingpong_rtt_beside_pipe", "python_pipe_rtt", "Pipe round trip, WaitPolicy::Park"),
    ("dict_update_2p_one_key", "floor_mutex_2p_one_lock", "python_manager_dict_update_locked",
     "2 processes x 1 M atomic updates of one key (Python: Manager dict + Manager Lock)"),
    ("dict_update_2p_random_keys", "floor_mutex_2p_64_locks", "python_manager_dict_update_locked",
     "2 processes x 1 M atomic updates, random keys"),
    ("pool_map_chunksize1", None, "python_pool_map_chunksize1", "Pool.map, chunksize 1"),
    ("pool_apply_async_rtt", None, "python_pool_apply_async_rtt", "one apply_async at a time"),
    ("pool_startup_2", None, "python_pool_startup_2", "create 2 workers, get a first result"),
    ("pool_map_serde_small", "pool_map_chunksize1", "python_pool_map_serde_small",
     "Pool.map of {String, 8 f64}, serde/postcard (floor column: the Pod path, chunksize 1)"),
    ("ndarray_heat_step_vs_slice", None, None, "one 1024² heat step over ndarray views / the slice kernel (goal <= 1.05)"),
    ("pool_heat_2d_steps_per_s", "single_heat_2d_steps_per_s", None,
     "heat_diffusion 512², 2 workers, a pool call per step (floor column: one process)"),
    ("pool_sum_512mib_2w", "floor_sum_512mib_2p", "python_pool_sum_512mib_2w_pickled",
     "sum a 512 MiB f64 array, 2 workers (Python: chunks pickled to the pool)"),
    ("pool_fuzz_execs_per_s_crash_only", None, "python_pebble_fuzz_execs_per_s_crash_only",
     "fuzz campaign, 2 workers, 1% of inputs crash the worker (Python: pebble ProcessPool, a task per input)"),
    ("pool_fuzz_execs_per_s", "floor_fuzz_hang_bound_execs_per_s", "python_pebble_fuzz_execs_per_s",
     "the same plus 0.1% hangs cut by a 50 ms timeout (floor: the bound the hangs alone set)"),
    ("pool_timeout_detect_ms", None, None, "a hung task's error, after its deadline"),
]


def parse(path):
    figures = {}
    if not os.path.exists(path):
        return figures
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                figures[m.group(1)] = (float(m.group(2)), m.group(3))
    return figures


def fmt(fig):
    if fig is None:
        return "—"
    value, unit = fig
    return f"{value:.4g} {unit}"


PREFIX = {"k": 1e3, "M": 1e6, "G": 1e9}
TIME = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def base(fig):
    """(value in base units, base unit, higher is better) — `Mops/s` and `kops/s` compare."""
    value, unit = fig
    if unit in TIME:
        return value * TIME[unit], "s", False
    if unit.endswith("/s") and unit[0] in PREFIX and unit not in ("GB/s",) and len(unit) > 3:
        return value * PREFIX[unit[0]], unit[1:], True
    return value, unit, unit in HIGHER_IS_BETTER


def ratio(ours, other):
    """How many times better ours is than other (>1: ours wins)."""
    if ours is None or other is None:
        return "—"
    (a, ua, higher), (b, ub, _) = base(ours), base(other)
    if ua != ub or a <= 0 or b <= 0:
        return "—"
    r = a / b if higher else b / a
    return f"{r:.3g}x"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu}; Linux {platform.release()}; {rustc}; Python {platform.python_version()}"


def main():
    rust, py = parse(sys.argv[1]), parse(sys.argv[2])
    print("# Benchmarks\n")
    print(f"Generated by `benches/compare.sh` on {datetime.date.today().isoformat()}.  ")
    print(f"Machine: {machine()}.\n")
    print("Every shmkit figure is a median of several rounds; its floor (the raw OS mechanism doing the")
    print("same job) is measured in the same run. Ratios say how many times better shmkit is (>1x: shmkit")
    print("wins; for the floor, 1x means as fast as the raw mechanism). Python is `multiprocessing` doing")
    print("the same job (`benches/python/`). Ping-pong round trips run with the two processes pinned to")
    print("CPUs 0 and 1, Rust and Python alike, so parked figures include the kernel's cross-CPU wake-up")
    print("(the floor shows its cost on this machine). Regenerate with `benches/compare.sh`.\n")
    print("| figure | what | shmkit | OS floor | vs floor | Python | vs Python |")
    print("|---|---|---|---|---|---|---|")
    shown = set()
    for name, floor, pyname, what in ROWS:
        ours = rust.get(name)
        if ours is None:
            continue
        shown.update({name, floor, pyname})
        fl = rust.get(floor) if floor else None
        p = py.get(pyname) if pyname else None
        print(f"| `{name}` | {what} | {fmt(ours)} | {fmt(fl)} | {ratio(ours, fl)} | {fmt(p)} | {ratio(ours, p)} |")
    rest = [(k, v) for k, v in sorted({**rust, **py}.items()) if k not in shown]
    if rest:
        print("\nOther figures printed in the same run:\n")
        print("| figure | value |")
        print("|---|---|")
        for k, v in rest:
            print(f"| `{k}` | {fmt(v)} |")


if __name__ == "__main__":
    main()
