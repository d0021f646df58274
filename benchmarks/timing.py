"""Timing shared by the benchmarks (run as `python benchmarks/<name>.py`, so this folder is on sys.path)."""

import time


def best_of(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `fn()` (seconds): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
