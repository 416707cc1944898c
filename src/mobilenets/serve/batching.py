"""Dynamic micro-batching: requests that arrive close together share one model run.

The first request of a batch waits at most `max_delay_ms` for others (Triton's `max_queue_delay_microseconds`,
BentoML's `max_latency_ms`, Ray Serve's `batch_wait_timeout_s`), and only while others are on their way (being
read or decoded, `expecting`): a lone request runs at once, at batch-1 latency. A batch holds at most
`max_batch_size`; under load, the requests that queued while the model ran form the next batch at once. The model
runs on one worker thread, off the event loop, so the server keeps accepting and decoding while it computes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


class MicroBatcher:
    """Collects submitted items into batches for `run_batch` (a list in, one result per item out, in order);
    `on_batch(size)` and `on_queue(depth)` report to metrics."""

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], *, max_batch_size: int = 16,
                 max_delay_ms: float = 5.0, on_batch: Callable[[int], None] = lambda size: None,
                 on_queue: Callable[[int], None] = lambda depth: None) -> None:
        if max_batch_size < 1 or max_delay_ms < 0:
            raise ValueError(f"max_batch_size must be at least 1 and max_delay_ms at least 0, got {max_batch_size} "
                             f"and {max_delay_ms}")
        self.run_batch, self.max_batch_size, self.max_delay = run_batch, max_batch_size, max_delay_ms / 1000
        self.on_batch, self.on_queue = on_batch, on_queue
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._arriving = 0
        self._model_thread: ThreadPoolExecutor | None = None

    async def start(self, warm_up: Iterable[list[Any]] = ()) -> None:
        """Start collecting (in the running event loop), after running the batches of `warm_up` in the model
        thread; after `stop`, it can start again."""
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="mobilenets-model")
        try:
            for batch in warm_up:
                await asyncio.get_running_loop().run_in_executor(self._model_thread, self.run_batch, batch)
        except BaseException:
            self._model_thread.shutdown()
            self._model_thread = None
            raise
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        """Answer what is queued, then stop."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)
        self._queue = self._worker = self._model_thread = None

    def _results(self, items: list[Any]) -> list[Any]:
        """`run_batch`'s results, one per item: a wrong count fails the batch rather than leave requests (and
        `stop`) waiting forever."""
        results = list(self.run_batch(items))
        if len(results) != len(items):
            raise ValueError(f"run_batch gave {len(results)} results for a batch of {len(items)}")
        return results

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around the reading and decoding of a request: a batch waits for it (up to the delay) while it lasts."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def submit(self, item: Any) -> Any:
        """The result of `item`, computed in a batch with whatever else arrives meanwhile."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started (start() in the app's lifespan)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        self.on_queue(self._queue.qsize())
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        queue, model_thread = self._queue, self._model_thread
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_delay
            while len(batch) < self.max_batch_size and (not queue.empty() or self._arriving):
                try:
                    batch.append(queue.get_nowait() if not queue.empty() else
                                 await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            self.on_queue(queue.qsize())
            self.on_batch(len(batch))
            try:
                results = await loop.run_in_executor(model_thread, self._results, [i for i, _ in batch])
            except Exception as error:  # one failed run fails its own requests, not the server
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its client may have gone
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                queue.task_done()
