"""Map a pure per-item function over items in batches, in a local process pool.

Per-item work (decode one file, de-identify it, encode PNG) is a pure function so
that a distributed engine can run it later; here a process pool runs it on all
local cores. Results come back in input order, so outputs keep deterministic names
whichever engine or worker count ran them, and at most a few batches are in flight
at once, so memory stays flat however many items there are.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

from tqdm.auto import tqdm

In = TypeVar("In")
Out = TypeVar("Out")


def default_workers() -> int:
    """Return the number of usable cores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_batch(fn: Callable[[In], Out], batch: Sequence[In]) -> list[Out]:
    return [fn(item) for item in batch]


def _batches(items: Iterable[In], size: int) -> Iterator[list[In]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def map_batches(fn: Callable[[In], Out], items: Iterable[In], *, workers: int | None = None,
                batch_size: int = 8, desc: str = "", total: int | None = None) -> Iterator[Out]:
    """Yield ``fn(item)`` for every item, in input order, computed by `workers` processes.

    `fn` must be picklable (a module-level function or a functools.partial of one)
    and must not raise for bad input: it returns a value that says what went wrong.
    """
    workers = workers or default_workers()
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = tqdm(total=total, desc=desc, unit="item", disable=None, dynamic_ncols=True)
    try:
        if workers <= 1:
            for batch in _batches(items, batch_size):
                yield from _run_batch(fn, batch)
                progress.update(len(batch))
            return
        # Not "fork": a forked child inherits the locks of polars' and torch's thread pools
        # mid-use and can hang forever on its first table read.
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending: deque[tuple[Future, int]] = deque()
            for batch in _batches(items, batch_size):
                pending.append((pool.submit(_run_batch, fn, batch), len(batch)))
                if len(pending) >= 2 * workers:
                    future, size = pending.popleft()
                    yield from future.result()
                    progress.update(size)
            while pending:
                future, size = pending.popleft()
                yield from future.result()
                progress.update(size)
    finally:
        progress.close()
