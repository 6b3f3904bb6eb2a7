"""The bounded worker pool and its request queue.

At most `workers` translations run at once, in threads (TensorFlow and PIL release the GIL
while they compute), and at most `queue` more wait for a thread. A request that finds all
`workers + queue` places taken is refused at once (QueueFull -> 503 with Retry-After), before
its body is read: the places bound the server's memory as well as its latency, since only an
admitted request holds an upload in memory.

A place is given back when its job ends, not when its request does: a client that hangs up
while its job waits or runs does not free a place that the job still uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    """Every place (running and waiting) is taken; retry_after: whole seconds to wait, at least 1."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Ticket:
    """One admitted request's place. run() hands its job to a thread once; the place is given
    back when the job ends, or by close() if the request ends without running one."""

    def __init__(self, pool: "WorkerPool"):
        self._pool = pool
        self._submitted = False
        self._closed = False

    async def run(self, fn: Callable[[], T]) -> T:
        if self._submitted or self._closed:
            raise RuntimeError("a ticket runs one job")
        self._submitted = True
        future = self._pool._executor.submit(self._pool._timed, fn)
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        if not self._submitted:
            self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool._release()


class WorkerPool:
    """`workers` threads and `queue` waiting places; admit() -> Ticket or raises QueueFull."""

    def __init__(self, workers: int, queue: int):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0. Received: workers={workers}, queue={queue}")
        self.workers, self.queue = workers, queue
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tfcyclegan-serve")
        self._lock = threading.Lock()
        self._admitted = 0  # requests holding a place: running, waiting for a thread, or reading their upload
        self._running = 0
        self._seconds_per_job = 1.0  # a running mean, for Retry-After; a guess until the first job ends
        self.completed = 0
        self.refused = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    def admit(self) -> Ticket:
        with self._lock:
            if self._admitted >= self.capacity:
                self.refused += 1
                # The queue ahead of a retry drains at `workers` jobs per job time.
                wait = math.ceil(self._admitted * self._seconds_per_job / self.workers)
                raise QueueFull(
                    f"the server is busy: {self._running} running and {self._admitted - self._running} waiting, the most "
                    f"it takes ({self.workers} at once + {self.queue} queued); try again in {max(1, wait)} s",
                    retry_after=max(1, wait),
                )
            self._admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def _timed(self, fn: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        start = time.perf_counter()
        try:
            return fn()
        finally:
            seconds = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self.completed += 1
                self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * seconds

    def stats(self) -> dict:
        with self._lock:
            return {"workers": self.workers, "queue": self.queue, "running": self._running,
                    "waiting": self._admitted - self._running, "completed": self.completed, "refused": self.refused}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
