"""The synchronous `LLMEngine` driven from asyncio: one background thread owns the engine and loops
`step()` while there is work; the event loop talks to it only through a command queue.

Why one thread: the engine is not thread-safe and a forward pass holds the GIL for long stretches
only inside torch kernels (which release it), so a single owner thread keeps the engine consistent
and the event loop responsive. `add_request`/`abort` are commands executed between steps; each
request's outputs go back to its own asyncio.Queue through `loop.call_soon_threadsafe`.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from r1.engine.engine import LLMEngine, RequestOutput
from r1.engine.sampling import SamplingParams
from r1.engine.sequence import Status

log = logging.getLogger("r1.serve")


class EngineDead(RuntimeError):
    """The engine thread hit an error in a step; the request cannot continue."""


class ShuttingDown(RuntimeError):
    """The server is draining for shutdown and takes no new requests."""


@dataclass
class EngineSnapshot:
    """What the metrics and /health read, refreshed by the engine thread after every step (reading
    the engine's own structures from the event loop would race with the step)."""
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    num_blocks: int = 0
    prefix_hits: int = 0  # blocks served from the prefix cache
    prefix_queries: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    spec_drafted: int = 0
    spec_accepted: int = 0
    preemptions: int = 0
    steps: int = 0


@dataclass
class _Pending:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    arrival: float
    scheduled: bool = False


class AsyncEngine:
    """`stream = await engine.add(rid, prompt_ids, params)`, then `async for out in stream`;
    `stream.abort()` (a client that went away) frees the request's KV blocks at once."""

    def __init__(self, engine: LLMEngine, on_scheduled: Callable[[str, float], None] | None = None,
                 idle_wait_s: float = 0.5) -> None:
        self.engine = engine
        self.on_scheduled = on_scheduled  # (request id, seconds it waited in the queue)
        self._idle_wait = idle_wait_s
        self._cmds: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pending: dict[str, _Pending] = {}  # owned by the engine thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepting = True
        self.snapshot = EngineSnapshot(num_blocks=len(engine.blocks.blocks))
        self.in_flight = 0  # requests between add and their last output (event-loop side)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="r1-engine", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def shutdown(self, grace_s: float = 10.0) -> None:
        """Stop taking requests, let in-flight ones finish for up to grace_s, abort the rest."""
        self.accepting = False
        deadline = time.monotonic() + max(0.0, grace_s)
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._cmds.put(("abort_all",))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None

    # ------------------------------------------------------------------ asyncio side
    async def add(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                  think_in_prompt: bool | None = None) -> RequestStream:
        """Queue the request; raises what `LLMEngine.add_request` raises (ValueError for a bad
        request, QueueFull when the waiting queue is at its bound). Iterate the returned stream
        for the outputs; abort it (or stop iterating early) to free the request's KV blocks."""
        if not self.accepting:
            raise ShuttingDown("the server is shutting down")
        if not self.alive:
            raise EngineDead("the engine is not running")
        loop = asyncio.get_running_loop()
        added: asyncio.Future = loop.create_future()
        stream = RequestStream(self, request_id)
        self._cmds.put(("add", request_id, prompt_ids, params, think_in_prompt, loop, stream.queue, added))
        self._wake.set()
        try:
            await added
        except asyncio.CancelledError:
            self._cmds.put(("abort", request_id))  # ordered after the add: nothing leaks
            self._wake.set()
            raise
        self.in_flight += 1
        return stream

    def abort(self, request_id: str) -> None:
        self._cmds.put(("abort", request_id))
        self._wake.set()

    # ------------------------------------------------------------------ engine thread
    def _run(self) -> None:
        eng = self.engine
        while not self._stop.is_set():
            self._drain()
            if not eng.has_unfinished():
                self._refresh()
                self._wake.wait(self._idle_wait)
                self._wake.clear()
                continue
            try:
                outs = eng.step()
            except Exception as e:  # a bug in a step must not hang every client: fail them all
                log.exception("engine step failed; aborting %d requests", len(self._pending))
                self._fail_all(EngineDead(f"engine step failed: {type(e).__name__}: {e}"))
                continue
            self._note_scheduled()
            for out in outs:
                p = self._pending.get(out.request_id)
                if p is None:
                    continue
                if out.finished:
                    del self._pending[out.request_id]
                p.loop.call_soon_threadsafe(p.queue.put_nowait, out)
            self._refresh()
        self._drain()
        self._fail_all(ShuttingDown("the server shut down before the request finished"))
        self._refresh()

    def _drain(self) -> None:
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return
            kind = cmd[0]
            if kind == "add":
                _, rid, ids, params, think, loop, q, fut = cmd
                try:
                    self.engine.add_request(rid, ids, params, think_in_prompt=think)
                except Exception as e:  # reported to the request's handler, not raised here
                    loop.call_soon_threadsafe(_set_exception, fut, e)
                    continue
                self._pending[rid] = _Pending(loop, q, time.monotonic())
                loop.call_soon_threadsafe(_set_result, fut, None)
            elif kind == "abort":
                self.engine.abort(cmd[1])
                self._pending.pop(cmd[1], None)
            elif kind == "abort_all":
                for rid in list(self.engine.requests):
                    self.engine.abort(rid)

    def _fail_all(self, err: BaseException) -> None:
        for rid, p in list(self._pending.items()):
            self.engine.abort(rid)
            p.loop.call_soon_threadsafe(p.queue.put_nowait, err)
        self._pending.clear()

    def _note_scheduled(self) -> None:
        # queue time = arrival until the scheduler first admits one of the request's sequences
        now = time.monotonic()
        for rid, p in self._pending.items():
            if p.scheduled:
                continue
            req = self.engine.requests.get(rid)
            if req is None or any(s.status != Status.WAITING or s.num_computed for s in req.seqs):
                p.scheduled = True
                if self.on_scheduled is not None:
                    self.on_scheduled(rid, now - p.arrival)

    def _refresh(self) -> None:
        eng = self.engine
        sched, blocks, stats = eng.scheduler, eng.blocks, eng.stats
        self.snapshot = EngineSnapshot(
            running=len(sched.running), waiting=len(sched.waiting), kv_usage=blocks.usage,
            num_blocks=len(blocks.blocks), prefix_hits=blocks.hits, prefix_queries=blocks.queries,
            prompt_tokens=stats.get("prompt_tokens", 0), generation_tokens=stats.get("generation_tokens", 0),
            spec_drafted=stats.get("spec_drafted", 0), spec_accepted=stats.get("spec_accepted", 0),
            preemptions=sched.num_preemptions, steps=self.snapshot.steps + 1)


class RequestStream:
    """The outputs of one request, in order; ends after the finished output, or at once when aborted."""

    def __init__(self, engine: AsyncEngine, request_id: str) -> None:
        self.engine, self.request_id = engine, request_id
        self.queue: asyncio.Queue = asyncio.Queue()
        self.finished = False
        self.aborted = False
        self._closed = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self._closed:
            raise StopAsyncIteration
        try:
            item = await self.queue.get()
        except asyncio.CancelledError:  # the consumer was cancelled (client disconnected)
            self.abort()
            raise
        if item is _ABORTED:
            self._close()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._close()
            raise item
        if item.finished:
            self.finished = True
            self._close()
        return item

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.in_flight -= 1

    def abort(self) -> None:
        """Free the request now; a consumer waiting for outputs stops iterating."""
        if self.finished or self.aborted:
            return
        self.aborted = True
        self.engine.abort(self.request_id)
        self.queue.put_nowait(_ABORTED)
        if self._closed:
            return
        # the consumer may never iterate again (it went away): release the in-flight count now
        self._close()


_ABORTED = object()


def _set_result(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
