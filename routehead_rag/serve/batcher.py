"""Dynamic batching: concurrent requests wait in a bounded queue and are served in batches by the engine.

A request is checked and laid out (:meth:`RouteHeadReranker.prepare`) before it is queued, so a bad or over-long
one never waits. One worker takes the oldest request, then every other request that arrives within ``max_wait_s``
while the batch stays within ``batch_tokens`` prompt tokens, and runs them in one :meth:`RouteHeadReranker.run` on
its own thread (the event loop keeps accepting requests). A full queue refuses at once (:class:`QueueFull`); a
request that waits past its deadline is dropped before it runs (:class:`TimedOut`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..reranker import RerankJob, RerankResult, RouteHeadReranker


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already: try again later."""


class TimedOut(Exception):
    """The request waited longer than its timeout."""


@dataclass
class _Pending:
    job: RerankJob
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one batch held, for the metrics: requests, prompt tokens, seconds in the engine."""

    requests: int
    tokens: int
    seconds: float


class Batcher:
    """Serve :class:`RerankJob` s of concurrent requests in batches on one engine.

    max_queue: requests that may wait (beyond those running); batch_tokens: prompt tokens per batch (a request
    larger than that runs alone); max_wait_s: how long the first request of a batch waits for company;
    on_batch: called with each batch's :class:`BatchStats`.
    """

    def __init__(self, engine: RouteHeadReranker, *, max_queue: int = 64, batch_tokens: int = 16384,
                 max_wait_s: float = 0.005, on_batch: Callable[[BatchStats], None] | None = None) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.batch_tokens = batch_tokens
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routehead-engine")
        self._carry: _Pending | None = None  # taken from the queue but too big for the batch it was offered to

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch running)."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve(), name="routehead-batcher")

    async def stop(self) -> None:
        """Finish what is queued and running, then stop."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def submit(self, job: RerankJob, timeout_s: float) -> list[RerankResult]:
        """The job's results, once a batch has run it. Raises :class:`QueueFull` at once when the queue is full and
        :class:`TimedOut` when ``timeout_s`` passes first."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started; call start() inside the event loop first.")
        if self.depth >= self.max_queue:
            raise QueueFull
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except asyncio.TimeoutError:
            pending.future.cancel()  # skipped if it has not run yet
            raise TimedOut from None

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            pending, self._carry = self._carry, None
            return pending
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _serve(self) -> None:
        while True:
            first = await self._next(None)
            batch, tokens = [first], first.job.tokens
            deadline = time.perf_counter() + self.max_wait_s
            while tokens < self.batch_tokens and (left := deadline - time.perf_counter()) > 0:
                pending = await self._next(left)
                if pending is None:
                    break
                if tokens + pending.job.tokens > self.batch_tokens:
                    self._carry = pending
                    break
                batch.append(pending)
                tokens += pending.job.tokens
            await self._run(batch, tokens)

    async def _run(self, batch: list[_Pending], tokens: int) -> None:
        live = [p for p in batch if not p.future.done()]  # a timed-out request is not run
        try:
            if live:
                start = time.perf_counter()
                loop = asyncio.get_running_loop()
                try:
                    results = await loop.run_in_executor(self._thread, self.engine.run, [p.job for p in live])
                except Exception as err:  # the model failed: every request of the batch gets the error
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(err)
                else:
                    for p, result in zip(live, results):
                        if not p.future.done():
                            p.future.set_result(result)
                if self.on_batch is not None:
                    self.on_batch(BatchStats(len(live), tokens, time.perf_counter() - start))
        finally:
            for _ in batch:
                self._queue.task_done()
