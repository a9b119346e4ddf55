"""Dynamic batching: merge the inputs of concurrent requests into model calls under two limits.

Requests put their (already prompted) texts on one FIFO queue and await a future. A single worker
coroutine takes texts from the head of the queue until the next one would push the batch past
`max_batch_size` inputs or `max_batch_tokens` padded tokens (inputs x longest input, what a forward
pass really costs), runs the model in a dedicated thread (torch releases the GIL, so the event loop
keeps accepting and parsing requests meanwhile), and scatters the rows back. A large request may be
split over several batches; a small one rides along with others. The queue is bounded in inputs:
a request that does not fit is refused at once (`QueueFull` → HTTP 429 with Retry-After) instead of
waiting without bound. While the model runs, new requests pile up, so batches grow with load by
themselves; `batch_wait_s` only gives a batch that starts on an idle server a moment to fill.

`streams` model calls may run at once, each in its own thread. On a CPU, two calls on one core each
serve more than one call on two cores: a forward pass of short texts is a chain of small operators
whose OpenMP threads meet at a barrier after each, and any time slice the event loop (or anything
else on the machine) takes from one thread stalls its partner. When a stream frees while several are
idle, it takes its share of the queue (not all of it), so the streams work side by side.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tdro_suite.serve.metrics import ServeMetrics

log = logging.getLogger("tdro_suite.serve")

MIN_SHARE = 16  # a call on an idle stream takes at least this many inputs: splitting fewer gains nothing
EncodeFn = Callable[[list[str], list[int]], np.ndarray]  # (texts, their token counts) -> [N, D]


class QueueFull(Exception):
    """The queue cannot take this request now; the client should retry later."""


class BatcherStopped(Exception):
    """The server is shutting down; queued work will not run."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    tokens: list[int]
    future: asyncio.Future[np.ndarray]
    rows: list[np.ndarray | None] = field(default_factory=list)
    taken: int = 0  # texts handed to a batch so far
    done: int = 0  # texts whose vectors came back

    def __post_init__(self) -> None:
        self.rows = [None] * len(self.texts)


class DynamicBatcher:
    """Queue + one model thread; `await submit(texts, tokens)` returns their vectors in order."""

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_inputs: int,
        batch_wait_s: float = 0.0,
        streams: int = 1,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.encode = encode  # runs in the model thread; public so a test can wrap it
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_inputs = max_queue_inputs
        self.batch_wait_s = batch_wait_s
        self.streams = max(1, streams)
        self._metrics = metrics
        self._queue: collections.deque[_Job] = collections.deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._free = asyncio.Semaphore(self.streams)  # model threads without a call
        self._idle = self.streams
        self._calls: dict[asyncio.Task[None], list[_Job]] = {}  # running model calls and their jobs

    @property
    def pending(self) -> int:
        """Inputs queued and not yet handed to the model."""
        return self._pending

    def start(self) -> None:
        """Start the worker on the running event loop (call from the app's lifespan)."""
        if self._worker is None:
            self._executor = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="tdro-encode")
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="tdro-batcher")

    async def stop(self) -> None:
        """Stop taking work and fail what is queued or in flight; the model thread finishes its batch."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        calls, self._calls = self._calls, {}
        for call in calls:
            call.cancel()
        stopped = BatcherStopped("the server is shutting down")
        for job in [*(job for jobs in calls.values() for job in jobs), *self._queue]:
            if not job.future.done():
                job.future.set_exception(stopped)
        self._queue.clear()
        self._set_pending(0)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # wait for the running batch without blocking the event loop
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)

    async def submit(self, texts: Sequence[str], tokens: Sequence[int]) -> np.ndarray:
        """Queue `texts` (with their token counts) and wait for a float32 [N, D] array."""
        if self._worker is None:
            raise BatcherStopped("the batcher is not running")
        if len(texts) != len(tokens):
            raise ValueError("texts and tokens must be aligned")
        if not texts:
            raise ValueError("nothing to encode")
        if self._pending + len(texts) > self.max_queue_inputs:
            raise QueueFull(
                f"the queue holds {self._pending} inputs and takes at most {self.max_queue_inputs} "
                f"(max_queue_inputs); this request has {len(texts)}"
            )
        job = _Job(list(texts), [max(1, int(t)) for t in tokens], asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._set_pending(self._pending + len(texts))
        self._wakeup.set()
        return await job.future  # a cancelled request cancels the future; its remaining texts are skipped

    # ------------------------------------------------------------------ worker side
    def _set_pending(self, value: int) -> None:
        self._pending = value
        if self._metrics is not None:
            self._metrics.queue_depth.set(value)

    def _take(self, limit: int) -> list[tuple[_Job, int, int]]:
        """Slices (job, start, stop) of the queue head that fit the token budget and `limit` inputs."""
        slices: list[tuple[_Job, int, int]] = []
        count = longest = 0
        while self._queue and count < limit:
            job = self._queue[0]
            if job.future.done():  # cancelled by its client: drop what it still had queued
                self._queue.popleft()
                self._set_pending(self._pending - (len(job.texts) - job.taken))
                continue
            start = job.taken
            while job.taken < len(job.texts) and count < limit:
                new_longest = max(longest, job.tokens[job.taken])
                if count and (count + 1) * new_longest > self.max_batch_tokens:
                    break
                longest = new_longest
                count += 1
                job.taken += 1
            if job.taken > start:
                slices.append((job, start, job.taken))
            if job.taken < len(job.texts):
                break  # budget reached inside this job
            self._queue.popleft()
        self._set_pending(self._pending - sum(stop - start for _, start, stop in slices))
        if self._metrics is not None and count:
            self._metrics.batch_size.observe(count)
            self._metrics.batch_tokens.observe(count * longest)
        return slices

    def _share(self) -> int:
        """Inputs the next call takes: all it may, or, while other streams idle, an even share of the queue."""
        if self._idle <= 1:
            return self.max_batch_size
        return min(self.max_batch_size, max(MIN_SHARE, -(-self._pending // self._idle)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await self._free.acquire()
            if self.batch_wait_s and self._pending < self.max_batch_size and self._idle == self.streams:
                await asyncio.sleep(self.batch_wait_s)
            slices = self._take(self._share())
            if not self._queue:
                self._wakeup.clear()
            if not slices:
                self._free.release()
                continue
            self._idle -= 1
            # Hand the inputs to a model thread now, not from the task's first step: that would run only
            # after the callbacks already queued on the loop (the answers of the call that just ended).
            texts = [t for job, start, stop in slices for t in job.texts[start:stop]]
            tokens = [n for job, start, stop in slices for n in job.tokens[start:stop]]
            started = time.perf_counter()
            running = loop.run_in_executor(self._executor, self.encode, texts, tokens)
            call = loop.create_task(self._call(running, slices, started))
            self._calls[call] = [job for job, _, _ in slices]

    async def _call(self, running: asyncio.Future[np.ndarray], slices: list[tuple[_Job, int, int]],
                    started: float) -> None:
        """Wait for one model call running in a model thread and hand each job its rows."""
        try:
            vectors = await running
        except asyncio.CancelledError:
            raise  # stop() fails the in-flight jobs
        except Exception as exc:
            log.exception("Encoding a batch of %d inputs failed", sum(stop - start for _, start, stop in slices))
            for job, _, _ in slices:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self._calls.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._idle += 1
            self._free.release()
        if self._metrics is not None:
            self._metrics.batch_seconds.observe(time.perf_counter() - started)
        offset = 0
        for job, start, stop in slices:
            for i in range(start, stop):
                job.rows[i] = vectors[offset]
                offset += 1
            job.done += stop - start
            if job.done == len(job.texts) and not job.future.done():
                job.future.set_result(np.stack(job.rows))  # type: ignore[arg-type]
