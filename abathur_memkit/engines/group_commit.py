"""Group commit's queue, one per writer, shared by the engines.

A write that arrives while no other runs goes alone; the writes that arrive
while one runs wait here, then run together, a group per transaction, in
arrival order. How a group commits (and answers each write's future) is the
engine's: it hands its ``commit`` coroutine to the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["GroupQueue", "Queued"]


class Queued(Protocol):
    """A write waiting for a group: its caller awaits ``future``."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


Q = TypeVar("Q", bound=Queued)


class GroupQueue(Generic[Q]):
    """The writes waiting for the next group, and whether a write runs."""

    def __init__(self, commit: Callable[[list[Q]], Awaitable[None]], limit: int) -> None:
        self._commit = commit
        #: The most writes one group takes.
        self.limit = limit
        #: The event loop a write runs from; None while no write runs.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The writes waiting, oldest first (an engine may put back ones that never ran).
        self.waiting: deque[Q] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []

    async def join(self, entry: Q) -> Any:
        """Wait for ``entry``'s group and return its outcome; a caller cancelled
        meanwhile drops the write (its group skips it)."""
        self.waiting.append(entry)
        return await entry.future

    def done(self) -> None:
        """After a write that ran alone: run the writes that queued meanwhile,
        or mark that no write runs."""
        if self._drainer is not None:
            return
        if self.waiting:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._set_idle()

    async def idle(self) -> None:
        """Return when no write of this event loop runs or waits (before closing)."""
        loop = asyncio.get_running_loop()
        while self.loop is loop:
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _set_idle(self) -> None:
        self.loop = None
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drain(self) -> None:
        """Commit the waiting writes, a group per transaction, until none is left."""
        try:
            while group := self._group():
                await self._commit(group)
                # The callers just answered run first: their next writes join
                # the next group instead of each starting a transaction alone.
                await asyncio.sleep(0)
        finally:
            # Normally empty; not when the loop shuts down and cancels this task.
            for entry in self.waiting:
                entry.future.cancel()
            self.waiting.clear()
            self._drainer = None
            self._set_idle()

    def _group(self) -> list[Q]:
        group: list[Q] = []
        while self.waiting and len(group) < self.limit:
            entry = self.waiting.popleft()
            if not entry.future.done():  # done: its caller was cancelled
                group.append(entry)
        return group
