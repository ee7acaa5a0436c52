"""A Channels layer on a SQLite file, for the embedded default (no Redis).

Why: in embedded mode daphne, the Celery worker and beat are separate processes, and a change
committed in any of them must reach the websockets daphne holds. The in-memory layer cannot cross
processes; this one can, through a small SQLite database in WAL mode next to the main one
(``var/channels.sqlite3``) that every process opens.

How: ``send``/``group_send`` insert rows; each process runs one poller task that, every
``poll_interval`` seconds, takes (selects and deletes) the rows addressed to the channels it is
waiting on and hands them to per-channel asyncio queues. Delivery latency is therefore up to one
poll interval (50 ms by default). Limits: meant for one machine and tens of connections; use
Redis (``REDIS_URL``) beyond that. Messages must be JSON-serializable.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import string
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from channels.layers import BaseChannelLayer
from django.conf import settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_channel ON message (channel);
CREATE TABLE IF NOT EXISTS grp (
    name TEXT NOT NULL,
    channel TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (name, channel)
);
"""


class DatabaseChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    extensions = ["groups", "flush"]

    def __init__(
        self,
        path: str | None = None,
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 1000,
        poll_interval: float = 0.05,
        channel_capacity: Any = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.path = path or str(Path(settings.VAR_DIR) / "channels.sqlite3")
        self.group_expiry = group_expiry
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._process = f"{os.getpid()}{''.join(random.choices(string.ascii_letters, k=8))}"
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._waiting: dict[str, int] = defaultdict(int)
        self._poller: asyncio.Task[None] | None = None

    # --- storage -------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=10, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return self._db().execute(sql, params).fetchall()

    def _take(self, channels: list[str]) -> list[tuple[str, str]]:
        now = time.time()
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(channels))
                rows = db.execute(
                    f"SELECT id, channel, body FROM message WHERE channel IN ({marks}) "
                    "AND expires > ? ORDER BY id",
                    (*channels, now),
                ).fetchall()
                if rows:
                    db.executemany("DELETE FROM message WHERE id = ?", [(r[0],) for r in rows])
                db.execute("DELETE FROM message WHERE expires <= ?", (now,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return [(r[1], r[2]) for r in rows]

    # --- channel layer API ---------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific") -> str:
        suffix = "".join(random.choices(string.ascii_letters + string.digits, k=12))
        return f"{prefix}.{self._process}!{suffix}"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert self.valid_channel_name(channel)
        body = json.dumps(message)
        await asyncio.to_thread(
            self._run,
            "INSERT INTO message (channel, body, expires) VALUES (?, ?, ?)",
            (channel, body, time.time() + self.expiry),
        )

    async def receive(self, channel: str) -> dict[str, Any]:
        assert self.valid_channel_name(channel)
        queue = self._queues[channel]
        self._waiting[channel] += 1
        self._ensure_poller()
        try:
            return await queue.get()
        finally:
            self._waiting[channel] -= 1
            if self._waiting[channel] <= 0:
                self._waiting.pop(channel, None)
                if queue.empty():
                    self._queues.pop(channel, None)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._waiting:
            channels = list(self._waiting)
            for channel, body in await asyncio.to_thread(self._take, channels):
                self._queues[channel].put_nowait(json.loads(body))
            await asyncio.sleep(self.poll_interval)

    async def group_add(self, group: str, channel: str) -> None:
        assert self.valid_group_name(group)
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO grp (name, channel, expires) VALUES (?, ?, ?)",
            (group, channel, time.time() + self.group_expiry),
        )

    async def group_discard(self, group: str, channel: str) -> None:
        await asyncio.to_thread(
            self._run, "DELETE FROM grp WHERE name = ? AND channel = ?", (group, channel)
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.valid_group_name(group)
        now = time.time()
        body = json.dumps(message)

        def insert() -> None:
            with self._lock:
                db = self._db()
                members = db.execute(
                    "SELECT channel FROM grp WHERE name = ? AND expires > ?", (group, now)
                ).fetchall()
                db.executemany(
                    "INSERT INTO message (channel, body, expires) VALUES (?, ?, ?)",
                    [(m[0], body, now + self.expiry) for m in members],
                )

        await asyncio.to_thread(insert)

    async def flush(self) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM message")
        await asyncio.to_thread(self._run, "DELETE FROM grp")

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
