"""Clocks that drive the engine: the machine's monotonic clock, or a manual one for tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...

    def timer(self, deadline: float) -> asyncio.Future[None]:
        """A future resolved at `deadline`; whoever holds it may resolve it sooner or cancel it."""
        ...


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def timer(self, deadline: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, deadline - time.monotonic()), _resolve, fut)
        fut.add_done_callback(lambda _: handle.cancel())
        return fut


class ManualClock:
    """Time moves only when a test calls `advance`; sleepers wake in deadline order."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        await self.timer(deadline)

    def timer(self, deadline: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if deadline <= self._now:
            fut.set_result(None)
        else:
            heapq.heappush(self._sleepers, (deadline, next(self._order), fut))
        return fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline and letting it run."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():  # a timer resolved early or cancelled is just dropped
                fut.set_result(None)
                await _settle()
        self._now = target
        await _settle()


async def _settle() -> None:
    # A few loop turns let woken tasks run up to their next await.
    for _ in range(3):
        await asyncio.sleep(0)
