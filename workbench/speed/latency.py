"""Wall-clock timing, peak memory and throughput of inference callables, robust to a shared, noisy machine.

Several callables are timed interleaved (one call of each per round, in a shuffled order), so that load changes
on the machine hit all of them alike and ratios between them measured in one run stay meaningful.
"""
from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Per-call wall time in milliseconds over `runs` calls after warm-up: median, min and max."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: list[float]) -> "Timing":
        millis = [s * 1000.0 for s in seconds]
        return cls(statistics.median(millis), min(millis), max(millis), len(millis))


def set_threads(threads: int) -> None:
    """Use `threads` intra-op threads for PyTorch on the CPU (ONNX Runtime sessions take theirs when created)."""
    torch.set_num_threads(threads)


def time_interleaved(
    calls: dict[str, Callable[[], Any]],
    repeats: int = 30,
    warmup: int = 3,
    budget_s: float | None = None,
    min_runs: int = 5,
    progress: Callable[[int], None] | None = None,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time every callable of `calls`: `warmup` untimed calls each, then up to `repeats` rounds of one timed call
    each in a shuffled order; stops after `budget_s` seconds once `min_runs` rounds are done. `synchronize` (e.g.
    `torch.cuda.synchronize`) runs before each clock read; `progress(rounds_done)` after each round."""
    seconds = interleaved_seconds(calls, repeats, warmup, budget_s, min_runs, progress, synchronize)
    return {name: Timing.of(values) for name, values in seconds.items()}


def interleaved_seconds(
    calls: dict[str, Callable[[], Any]],
    repeats: int = 30,
    warmup: int = 3,
    budget_s: float | None = None,
    min_runs: int = 5,
    progress: Callable[[int], None] | None = None,
    synchronize: Callable[[], None] | None = None,
    settle: int = 0,
    block: int = 1,
) -> dict[str, list[float]]:
    """The per-round times (seconds) behind `time_interleaved`, for ratios paired by round (`paired_ratio`).

    Each round visits every callable once, in a shuffled order; a visit makes `settle` untimed calls (they absorb
    the switch from another runtime's threads and caches), then `block` timed ones, and records their median."""
    sync = synchronize or (lambda: None)
    for call in calls.values():
        for _ in range(warmup):
            call()
    sync()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    shuffler = random.Random(0)
    started = time.perf_counter()
    for round_index in range(repeats):
        shuffler.shuffle(order)
        for name in order:
            for _ in range(settle):
                calls[name]()
            sync()
            samples = []
            for _ in range(block):
                begin = time.perf_counter()
                calls[name]()
                sync()
                samples.append(time.perf_counter() - begin)
            seconds[name].append(statistics.median(samples))
        if progress:
            progress(round_index + 1)
        over_budget = budget_s is not None and time.perf_counter() - started > budget_s
        if over_budget and round_index + 1 >= min_runs:
            break
    return seconds


def paired_ratio(numerator: Iterable[float], denominator: Iterable[float]) -> float:
    """Median of the per-round ratios of two interleaved timing series (robust to load drifting between rounds)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def time_cuda_events(call: Callable[[], Any], repeats: int = 30, warmup: int = 3) -> Timing:
    """Time a CUDA callable with CUDA events (device time between launch and completion), in milliseconds."""
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    millis = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        millis.append(start.elapsed_time(end))
    return Timing(statistics.median(millis), min(millis), max(millis), len(millis))


def peak_memory_bytes(call: Callable[[], Any], device: str = "cpu") -> int:
    """Peak bytes allocated by PyTorch's allocator during one `call`, above what was allocated before it (weights
    and inputs excluded): on CUDA from the allocator's statistics, on the CPU from the profiler's allocation events."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recording:
        call()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in recording.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler back-end's own log lines, which it writes to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def throughput(timing: Timing, batch_size: int) -> float:
    """Images per second of a batch call whose median time is `timing`."""
    return batch_size / (timing.median_ms / 1000.0)
