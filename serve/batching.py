"""Request micro-batching: concurrent requests of one worker scored in one ONNX Runtime call.

`MicroBatcher.score(model, inputs)` queues a request's rows. Only one model call runs at a time (off the
event loop, in one thread), and requests that arrive during a call form the next batch (up to `max_rows`
rows). With `max_wait` 0 a request that finds the model idle goes at once; with `max_wait` > 0 it waits
up to that long for batch-mates first. Rows are grouped by
model, so a batch never mixes two versions across a swap. On by default, with no wait: measured by
bench/serve_load.py --configs-only (docs/BENCHMARKS.md), on the make-run champion it took 64 connections
from 1,758 to 2,671 req/s and 8 from 1,721 to 1,820, at 0.3 ms more p50 for a lone request (the thread
hop); on the ML-1M-sized model it cut p99 at 64 connections from 617 to 197 ms. A 1 ms wait cost a lone
request more than it gained. `--batching off` scores on the event loop instead. With an int8 graph a
request's scores depend slightly on its batch-mates (activations are scaled per call).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    def __init__(self, max_rows: int, max_wait: float):
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._pending: list[tuple[object, np.ndarray, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ort-batch")

    async def score(self, model, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((model, inputs, fut))
        if not self._running:
            if self.max_wait <= 0 or sum(len(x) for _, x, _ in self._pending) >= self.max_rows:
                self._dispatch(loop)  # idle: go now; whatever arrives during the call is the next batch
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait, self._dispatch, loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running or not self._pending:
            return
        model = self._pending[0][0]
        batch, rest, rows = [], [], 0
        for entry in self._pending:
            if entry[0] is model and rows + len(entry[1]) <= max(self.max_rows, len(self._pending[0][1])):
                batch.append(entry)
                rows += len(entry[1])
            else:
                rest.append(entry)
        self._pending = rest
        self._running = True
        inputs = np.concatenate([x for _, x, _ in batch]) if len(batch) > 1 else batch[0][1]
        call = loop.run_in_executor(self._pool, model.score, inputs)
        call.add_done_callback(lambda done: self._finish(loop, done, batch))

    def _finish(self, loop, done: asyncio.Future, batch) -> None:
        self._running = False
        if done.exception() is not None:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(done.exception())
        else:
            scores, idx = done.result()
            start = 0
            for _, x, fut in batch:
                if not fut.done():
                    fut.set_result((scores[start : start + len(x)], idx[start : start + len(x)]))
                start += len(x)
        if self._pending:  # what arrived during the call goes next, without waiting again
            self._dispatch(loop)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
