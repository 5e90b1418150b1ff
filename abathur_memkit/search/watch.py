"""Watch a folder and keep the document index in step: ``memkit watch DB DIR``.

watchdog reports file events from its own thread; they are handed to the
event loop, and a sync runs once no event has arrived for ``debounce``
seconds (an editor's save is often several events: write, rename, chmod).
Each sync is ``sync_directory``, so unchanged files cost a hash and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, Protocol

from ..errors import InvalidInputError, MemkitError
from .documents import DocumentIndexService, SyncSummary, _check_pattern, _check_root, _check_type

__all__ = ["Watched", "watch_directory"]


class Watched(Protocol):
    """What a watch needs of a database (``Database`` has it): its document
    index, and where its own files are (their events are ignored)."""

    @property
    def path(self) -> str: ...
    @property
    def in_memory(self) -> bool: ...
    @property
    def documents(self) -> DocumentIndexService: ...

OnSync = Callable[["SyncSummary"], Awaitable[None] | None]
OnError = Callable[[MemkitError], Awaitable[None] | None]

_log = logging.getLogger(__name__)


async def watch_directory(
    db: Watched,
    root: str | os.PathLike[str],
    pattern: str = "**/*.md",
    *,
    debounce: float = 0.5,
    on_sync: OnSync | None = None,
    stop: asyncio.Event | None = None,
    initial: bool = True,
    document_type: str | None = None,
    progress: bool | None = False,
    on_error: OnError | None = None,
) -> None:
    """Sync ``root`` now (``initial``) and after every burst of changes, until
    ``stop`` is set or the task is cancelled. ``on_sync`` gets each summary.

    A sync that fails (the folder was removed, the embedder is down) does not
    end the watch: ``on_error`` gets the error (by default it is logged), and
    the next change syncs again.
    """
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError as exc:  # pragma: no cover - watchdog is a dependency
        raise MemkitError("watch needs watchdog: pip install watchdog") from exc
    if not isinstance(debounce, int | float) or isinstance(debounce, bool) or debounce < 0:
        raise InvalidInputError(f"Invalid debounce: {debounce!r} (seconds >= 0)")
    # Bad arguments fail here, not as a sync error the watch would only report.
    path = _check_root(root)
    _check_pattern(pattern)
    _check_type(document_type)
    wanted = _suffix(pattern)
    ignored = _database_files(db)
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    stop = stop or asyncio.Event()

    def relevant(event: FileSystemEvent) -> bool:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for raw in paths:
            name = os.fsdecode(raw) if raw else ""
            if not name or os.path.abspath(name) in ignored:
                continue
            if event.is_directory or wanted is None or name.endswith(wanted):
                return True
        return False

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if relevant(event):
                loop.call_soon_threadsafe(changed.set)

    async def sync() -> None:
        try:
            summary = await db.documents.sync_directory(
                path, pattern, document_type=document_type, progress=progress)
        except MemkitError as exc:
            if on_error is None:
                _log.warning("sync of %s failed: %s", path, exc)
            else:
                await _call(on_error, exc)
            return
        await _call(on_sync, summary)

    observer: Any = Observer()
    observer.schedule(Handler(), str(path), recursive=True)
    observer.start()
    try:
        if initial:
            await sync()
        while not stop.is_set():
            if not await _first(changed, stop):
                break
            # Quiet period: every further event restarts the wait.
            while True:
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), timeout=debounce)
                except TimeoutError:
                    break
            await sync()
    finally:
        observer.stop()
        await asyncio.to_thread(observer.join, 5.0)


async def _call(callback: Callable[[Any], Awaitable[None] | None] | None, arg: Any) -> None:
    result = None if callback is None else callback(arg)
    if result is not None:
        await result


async def _first(changed: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for a change (True) or for stop (False)."""
    waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return not stop.is_set()


def _suffix(pattern: str) -> str | None:
    """``"**/*.md"`` -> ``".md"``: events for other files are ignored; None = no filter."""
    last = PurePosixPath(pattern).name
    if last.startswith("*.") and not any(c in last[2:] for c in "*?["):
        return last[1:]
    return None


def _database_files(db: Watched) -> set[str]:
    if db.in_memory:
        return set()
    base = os.path.abspath(db.path)
    return {base, base + "-wal", base + "-shm", base + "-journal"}
