"""Admission control: a bounded number of requests deciding at once and a bounded queue.

Past the queue a request is refused at once with 429 and `Retry-After`; a request that waited
longer than the queue timeout, or arrives while the service drains for shutdown, gets 503 with
`Retry-After`. Memory stays bounded: a refused request's body is never decoded.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from .errors import ApiError
from .metrics import ServiceMetrics


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int, queue_timeout_s: float, retry_after_s: float,
                 metrics: ServiceMetrics | None = None):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.retry_after = str(max(1, int(round(retry_after_s))))
        self.metrics = metrics
        self.running = 0
        self.waiting = 0
        self.draining = False
        self._sem: asyncio.Semaphore | None = None

    def _refuse(self, status: int, code: str, message: str) -> ApiError:
        if self.metrics:
            self.metrics.errors.labels(kind=code).inc()
        return ApiError(status, code, message, headers={"Retry-After": self.retry_after})

    def _gauges(self) -> None:
        if self.metrics:
            self.metrics.in_flight.set(self.running)
            self.metrics.queued.set(self.waiting)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrency)
        if self.draining:
            raise self._refuse(503, "shutting_down", "the service is shutting down; retry on another instance")
        if self._sem.locked() and self.waiting >= self.max_queue:
            raise self._refuse(429, "overloaded",
                               f"{self.running} requests running and {self.waiting} queued; retry later")
        self.waiting += 1
        self._gauges()
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.queue_timeout_s)
        except asyncio.TimeoutError:
            raise self._refuse(503, "queue_timeout",
                               f"no processing slot within {self.queue_timeout_s:g} s; retry later") from None
        finally:
            self.waiting -= 1
            self._gauges()
        self.running += 1
        self._gauges()
        try:
            yield
        finally:
            self.running -= 1
            self._sem.release()
            self._gauges()
