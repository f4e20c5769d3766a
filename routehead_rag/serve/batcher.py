"""Dynamic batching with fair order: concurrent requests wait in bounded queues and are served in batches by the
engine.

A request is checked and laid out (:meth:`RouteHeadReranker.prepare`) before it is queued, so a bad or over-long
one never waits. Requests of at least ``large_tokens`` prompt tokens go to a lane of their own, with its own engine
thread: a forward cannot be interrupted, so a small request that arrives while a large one runs would wait for all of
it; on its own lane it shares the machine with at most one large request instead, which runs at a lower CPU
priority (the engine serves threads at once, :mod:`routehead_rag.tokens`). Each lane is served earliest estimated
finish first: a request's place is its arrival time plus its prompt tokens over the engine's measured tokens per
second, so a smaller request that arrives while a larger one waits goes first, and none is starved (every request
that arrives after its place goes after it). A lane's worker takes the first request, then, in that order, those
that fit in ``batch_tokens`` prompt tokens (after waiting ``max_wait_s`` for company where a batch can hold more than
one), and runs them in one :meth:`RouteHeadReranker.run` on the lane's thread (the event loop keeps accepting
requests). A full queue refuses at once (:class:`QueueFull`); a request that waits past its deadline is dropped
before it runs (:class:`TimedOut`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..reranker import RerankJob, RerankResult, RouteHeadReranker

FIRST_GUESS_TOKENS_PER_S = 1000.0  # the engine's speed before its first batch is measured (a small model on a CPU)


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already: try again later."""


class TimedOut(Exception):
    """The request waited longer than its timeout."""


@dataclass(order=True)
class _Pending:
    place: float  # arrival time + estimated seconds of engine time: the queue's order
    number: int  # arrival order, among equal places
    job: RerankJob = field(compare=False)
    future: asyncio.Future = field(compare=False)


@dataclass
class BatchStats:
    """What one batch held, for the metrics: requests, prompt tokens, seconds in the engine."""

    requests: int
    tokens: int
    seconds: float


LARGE_LANE_NICENESS = 10  # on Linux: the large lane's CPU share next to the small one's (about 1 to 10)


def _yield_to_small_requests() -> None:
    """Lower this thread's CPU priority (Linux; the threads it starts for its forwards inherit it), so that a small
    request running beside a large one gets most of the machine. Elsewhere the two lanes share it evenly."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LARGE_LANE_NICENESS)


class _Lane:
    """An engine thread and the requests waiting for it (a heap by place); ``large``: at a lower CPU priority."""

    def __init__(self, name: str, large: bool = False) -> None:
        self.name = name
        self.waiting: list[_Pending] = []
        self.arrived = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"routehead-{name}",
                                         initializer=_yield_to_small_requests if large else None)
        self.worker: asyncio.Task | None = None


class Batcher:
    """Serve :class:`RerankJob` s of concurrent requests in batches on one engine, earliest estimated finish first.

    max_queue: requests that may wait (beyond those running); batch_tokens: prompt tokens per batch (a request
    larger than that runs alone; 0: every request alone); max_wait_s: how long the first request of a batch waits for
    company; large_tokens: requests of at least this many prompt tokens run on a lane of their own (``None``: one
    lane); on_batch: called with each batch's :class:`BatchStats`.
    """

    def __init__(self, engine: RouteHeadReranker, *, max_queue: int = 64, batch_tokens: int = 16384,
                 max_wait_s: float = 0.005, large_tokens: int | None = None,
                 on_batch: Callable[[BatchStats], None] | None = None) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.batch_tokens = batch_tokens
        self.max_wait_s = max_wait_s
        self.large_tokens = large_tokens
        self.on_batch = on_batch
        self.tokens_per_s = FIRST_GUESS_TOKENS_PER_S  # measured on every batch since (a moving average)
        self._lanes: list[_Lane] = []
        self._numbers = itertools.count()
        self._idle: asyncio.Event | None = None
        self._unanswered = 0

    @property
    def unanswered(self) -> int:
        """Requests accepted and not answered yet: waiting or running."""
        return self._unanswered

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batches running)."""
        return sum(len(lane.waiting) for lane in self._lanes)

    def start(self) -> None:
        self._lanes = [_Lane("engine")] + ([_Lane("engine-large", large=True)] if self.large_tokens is not None else [])
        self._idle = asyncio.Event()
        self._idle.set()
        for lane in self._lanes:
            lane.worker = asyncio.create_task(self._serve(lane), name=f"routehead-batcher-{lane.name}")

    async def stop(self) -> None:
        """Finish what is queued and running, then stop."""
        if self._idle is not None:
            await self._idle.wait()
        for lane in self._lanes:
            lane.worker.cancel()
            try:
                await lane.worker
            except asyncio.CancelledError:
                pass
            lane.thread.shutdown(wait=True)

    async def submit(self, job: RerankJob, timeout_s: float) -> list[RerankResult]:
        """The job's results, once a batch has run it. Raises :class:`QueueFull` at once when the queue is full and
        :class:`TimedOut` when ``timeout_s`` passes first."""
        if not self._lanes:
            raise RuntimeError("the batcher is not started; call start() inside the event loop first.")
        if self.depth >= self.max_queue:
            raise QueueFull
        pending = _Pending(time.perf_counter() + job.tokens / self.tokens_per_s, next(self._numbers), job,
                           asyncio.get_running_loop().create_future())
        lane = self._lanes[-1] if self.large_tokens is not None and job.tokens >= self.large_tokens else self._lanes[0]
        heapq.heappush(lane.waiting, pending)
        self._unanswered += 1
        self._idle.clear()
        lane.arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except asyncio.TimeoutError:
            pending.future.cancel()  # skipped if it has not run yet
            raise TimedOut from None

    async def _serve(self, lane: _Lane) -> None:
        while True:
            await lane.arrived.wait()
            if self.max_wait_s > 0 and lane.waiting[0].job.tokens < self.batch_tokens:
                await asyncio.sleep(self.max_wait_s)  # company for the batch
            first = heapq.heappop(lane.waiting)
            batch, tokens = [first], first.job.tokens
            while lane.waiting and tokens + lane.waiting[0].job.tokens <= self.batch_tokens:
                pending = heapq.heappop(lane.waiting)
                batch.append(pending)
                tokens += pending.job.tokens
            if not lane.waiting:
                lane.arrived.clear()
            try:
                await self._run(lane, batch, tokens)
            finally:
                self._unanswered -= len(batch)
                if not self._unanswered:
                    self._idle.set()

    async def _run(self, lane: _Lane, batch: list[_Pending], tokens: int) -> None:
        live = [p for p in batch if not p.future.done()]  # a timed-out request is not run
        if not live:
            return
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(lane.thread, self.engine.run, [p.job for p in live])
        except Exception as err:  # the model failed: every request of the batch gets the error
            for p in live:
                if not p.future.done():
                    p.future.set_exception(err)
        else:
            for p, result in zip(live, results):
                if not p.future.done():
                    p.future.set_result(result)
        seconds = time.perf_counter() - start
        ran = sum(p.job.tokens for p in live)
        if seconds > 0 and ran > 0:
            self.tokens_per_s = 0.7 * self.tokens_per_s + 0.3 * ran / seconds
        if self.on_batch is not None:
            self.on_batch(BatchStats(len(live), tokens, seconds))
