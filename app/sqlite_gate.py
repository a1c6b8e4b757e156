"""Admit a bounded number of requests into the sync handlers when the database is SQLite.

FastAPI runs sync routes and dependencies on a pool of 40 threads, and a request may hop
between threads between its BEGIN and its COMMIT. SQLite has one writer at a time: if every
thread is waiting for the write lock, the request holding it never gets a thread to commit on.
Waiting here, in the event loop, holds no thread, so the holder always finds one.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SQLiteRequestGate:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self._slots is None:  # created inside the running event loop
            self._slots = anyio.Semaphore(self.limit)
        slots = self._slots
        await slots.acquire()
        held = True

        async def send_and_release(message: Message) -> None:
            # The unit of work has committed once the response starts; a streamed body
            # (an export) reads on its own and need not hold a slot.
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                slots.release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if held:
                slots.release()
