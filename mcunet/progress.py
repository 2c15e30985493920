"""Progress for the steps that take a while (planning patch stages, host and firmware builds,
runs on a board, evaluation), on stderr, and only when a step runs longer than
DELAY_S: quick commands print nothing extra. Set MCUNET_PROGRESS=0 to silence it."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterable, Iterator, TypeVar

DELAY_S = 2.0
T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("MCUNET_PROGRESS", "1") != "0"


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 row', '2 rows', '1,200 rows'."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


@contextlib.contextmanager
def progress(what: str) -> Iterator[None]:
    """Say `what...` once the step has run DELAY_S, and how long it took when it ends."""
    start = time.perf_counter()
    shown = threading.Event()

    def announce():
        if enabled():
            print(f"{what}...", file=sys.stderr, flush=True)
            shown.set()

    timer = threading.Timer(DELAY_S, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if shown.is_set():
            print(f"{what}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr,
                  flush=True)


def counted(items: Iterable[T], total: int, what: str, unit: str = "it") -> Iterable[T]:
    """A progress bar over items (tqdm on stderr), shown once the loop has run DELAY_S."""
    if not enabled():
        return items
    from tqdm import tqdm
    return tqdm(items, total=total, desc=what, unit=unit, delay=DELAY_S, file=sys.stderr,
                leave=False)
