"""Dynamic micro-batching: requests that arrive close together share one model run.

The first request of a batch waits at most `max_delay_ms` for others (Triton's `max_queue_delay_microseconds`,
BentoML's `max_latency_ms`, Ray Serve's `batch_wait_timeout_s`), and only while others are on their way (being
read or decoded, `expecting`): a lone request runs at once, at batch-1 latency. A batch holds at most
`max_batch_size`; under load, the requests that queued while the model ran form the next batch at once. The model
runs on one worker thread, off the event loop, so the server keeps accepting and decoding while it computes; the
answers are made from its outputs on another thread, so the model thread goes on to the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


def _outputs_as_answers(outputs: Any, items: list[Any]) -> Any:
    return outputs


class MicroBatcher:
    """Collects submitted items into batches for `run_batch` (a list in, the batch's outputs out, on the model
    thread) and `answer_batch(outputs, items)` (one answer per item, in order, on the answers thread; default: the
    outputs themselves); `on_batch(size)` and `on_queue(depth)` report to metrics."""

    def __init__(self, run_batch: Callable[[list[Any]], Any], *,
                 answer_batch: Callable[[Any, list[Any]], Sequence[Any]] = _outputs_as_answers,
                 max_batch_size: int = 16, max_delay_ms: float = 5.0,
                 on_batch: Callable[[int], None] = lambda size: None,
                 on_queue: Callable[[int], None] = lambda depth: None) -> None:
        if max_batch_size < 1 or max_delay_ms < 0:
            raise ValueError(f"max_batch_size must be at least 1 and max_delay_ms at least 0, got {max_batch_size} "
                             f"and {max_delay_ms}")
        self.run_batch, self.answer_batch = run_batch, answer_batch
        self.max_batch_size, self.max_delay = max_batch_size, max_delay_ms / 1000
        self.on_batch, self.on_queue = on_batch, on_queue
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._arriving = 0
        self._model_thread: ThreadPoolExecutor | None = None
        self._answers_thread: ThreadPoolExecutor | None = None
        self._answering: set[asyncio.Task] = set()  # the loop holds tasks weakly

    async def start(self, warm_up: Iterable[list[Any]] = ()) -> None:
        """Start collecting (in the running event loop), after running the batches of `warm_up` through the model
        and answers threads; after `stop`, it can start again."""
        loop = asyncio.get_running_loop()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="mobilenets-model")
        self._answers_thread = ThreadPoolExecutor(1, thread_name_prefix="mobilenets-answers")
        try:
            for batch in warm_up:
                outputs = await loop.run_in_executor(self._model_thread, self.run_batch, batch)
                await loop.run_in_executor(self._answers_thread, self._answers, outputs, batch)
        except BaseException:
            self._shut_threads()
            raise
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        """Answer what is queued, then stop."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
        self._shut_threads()
        self._queue = self._worker = None

    def _shut_threads(self) -> None:
        for pool in (self._model_thread, self._answers_thread):
            if pool is not None:
                pool.shutdown(wait=True)
        self._model_thread = self._answers_thread = None

    def _answers(self, outputs: Any, items: list[Any]) -> list[Any]:
        """`answer_batch`'s answers, one per item: a wrong count fails the batch rather than leave requests
        waiting forever."""
        answers = list(self.answer_batch(outputs, items))
        if len(answers) != len(items):
            raise ValueError(f"answer_batch gave {len(answers)} answers for a batch of {len(items)}")
        return answers

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
        queue, model_thread, answers_thread = self._queue, self._model_thread, self._answers_thread
        # At most one batch's outputs wait while another's answers are made: a slow answers thread holds the model
        # back (and the queue grows into larger batches) instead of outputs piling up in memory.
        waiting_for_answers = asyncio.Semaphore(1)
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
            items = [item for item, _ in batch]
            try:
                outputs = await loop.run_in_executor(model_thread, self.run_batch, items)
            except Exception as error:  # one failed run fails its own requests, not the server
                _hand_out(queue, batch, [error] * len(batch))
                continue
            await waiting_for_answers.acquire()
            task = loop.create_task(self._answer(answers_thread, waiting_for_answers, queue, outputs, batch))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, answers_thread: ThreadPoolExecutor, waiting_for_answers: asyncio.Semaphore,
                      queue: asyncio.Queue, outputs: Any, batch: list[tuple[Any, asyncio.Future]]) -> None:
        """Make the batch's answers from its outputs on the answers thread, then hand them to their requests."""
        try:
            answers = await asyncio.get_running_loop().run_in_executor(
                answers_thread, self._answers, outputs, [item for item, _ in batch])
        except Exception as error:  # as for a failed run: its own requests fail
            answers = [error] * len(batch)
        finally:
            waiting_for_answers.release()
        _hand_out(queue, batch, answers)


def _hand_out(queue: asyncio.Queue, batch: list[tuple[Any, asyncio.Future]], answers: list[Any]) -> None:
    """Resolve each request's future with its answer (an exception fails it) and count it done in `queue`."""
    for (_, future), answer in zip(batch, answers, strict=True):
        if not future.done():  # its client may have gone
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        queue.task_done()
