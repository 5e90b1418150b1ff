"""A small sync facade: drive an async ``Database`` from synchronous code.

The facade owns a private event loop on a daemon thread; every call is handed
to that loop and waited for, so the aiosqlite connections only ever see one
loop, and sync tests (or scripts) need no pytest-asyncio at all::

    def test_sync(memkit_sync_db):
        memkit_sync_db.memory.add_memory("user:a", "k", {"v": 1}, "semantic", "me")
        assert memkit_sync_db.memory.get_memory("user:a", "k")["value"] == {"v": 1}
        rows = memkit_sync_db.fetchall("SELECT count(*) AS n FROM memory_entries")
        plan = memkit_sync_db.run(memkit_plan.explain(memkit_sync_db.db, "SELECT ..."))
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["SyncDatabase"]

T = TypeVar("T")

_PLAIN = (str, bytes, int, float, bool, type(None), tuple, list, dict, set, frozenset)


class _Loop:
    """An event loop running on its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="memkit-sync-loop", daemon=True
        )
        self.thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        if threading.current_thread() is self.thread:
            raise RuntimeError("SyncDatabase called from its own event loop: await instead")

        async def wrap() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _has_coroutines(obj: object) -> bool:
    return any(
        inspect.iscoroutinefunction(getattr(type(obj), name, None))
        for name in dir(type(obj))
        if not name.startswith("_")
    )


class _Proxy:
    """Wraps an object so its coroutine methods return results synchronously."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return _wrap(getattr(self._target, name), self._loop)

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"


def _wrap(value: Any, loop: _Loop) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if callable(value):

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.isawaitable(result):
                return loop.run(result)
            return _wrap(result, loop)

        call.__name__ = getattr(value, "__name__", "call")
        call.__doc__ = getattr(value, "__doc__", None)
        return call
    if _has_coroutines(value):  # a service object: db.memory, db.sessions, ...
        return _Proxy(value, loop)
    return value


class SyncDatabase(_Proxy):
    """``Database`` with every coroutine method turned into a blocking call.

    ``.db`` is the underlying async Database (for ``run``); ``run(awaitable)``
    runs any coroutine on the facade's loop; ``close()`` closes both.
    """

    def __init__(self, db: Any) -> None:
        super().__init__(db, _Loop())
        self.db = db

    @property
    def __memkit_async__(self) -> Any:
        # Lets memkit's assertions accept the facade where they expect a Database.
        return self.db

    @classmethod
    def open(cls, path: Any = ":memory:", **kwargs: Any) -> SyncDatabase:
        """Create and initialize ``abathur_memkit.Database(path, **kwargs)``."""
        from abathur_memkit import Database

        facade = cls.__new__(cls)
        loop = _Loop()

        async def build() -> Any:
            db = Database(path, **kwargs)
            await db.initialize()
            return db

        try:
            db = loop.run(build())
        except BaseException:
            loop.stop()
            raise
        _Proxy.__init__(facade, db, loop)
        facade.db = db
        return facade

    def run(self, awaitable: Awaitable[T] | Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine (or a zero-argument coroutine function) to completion."""
        if callable(awaitable) and not inspect.isawaitable(awaitable):
            awaitable = awaitable()
        return self._loop.run(awaitable)

    def close(self) -> None:
        try:
            if not self._loop.loop.is_closed():
                self._loop.run(self.db.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncDatabase {self.db!r}>"
