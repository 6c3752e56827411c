"""The queue and its history on disk: one SQLite file, each change one transaction.

Why SQLite (the standard library's ``sqlite3``): a change (an item added, an item started,
an item finished and the next one started) is one atomic transaction, so a SIGKILL at any
moment leaves either the state before it or the state after it, never half of each. The
database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction is in the
operating system's hands before :meth:`QueueStore.add` returns, which is what survives the
*process* being killed (a power cut may lose the last transactions; ``durable=True`` makes
every commit wait for the disk).

Everything here blocks; :class:`~.plan_queue.PlanQueue` runs it on one thread of its own, so
the event loop never waits on the disk and the changes keep their order.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .items import FINAL_STATES, Item, ItemState, Record

#: The database's file name in the data directory.
QUEUE_DB = "queue.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    position REAL,          -- order in the queue while queued, else NULL
    done INTEGER,           -- order in the history once ended, else NULL
    item TEXT NOT NULL,     -- JSON of the Item
    started REAL NOT NULL DEFAULT 0,
    ended REAL NOT NULL DEFAULT 0,
    scan_ids TEXT NOT NULL DEFAULT '[]',
    run_uids TEXT NOT NULL DEFAULT '[]',
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS items_position ON items(position) WHERE position IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_done ON items(done) WHERE done IS NOT NULL;
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "item, state, started, ended, scan_ids, run_uids, message"


@dataclass(frozen=True)
class Snapshot:
    """What the store holds, as read at start-up."""

    queued: list[Item]
    running: list[Record]
    history: list[Record]  # the most recent, oldest first
    history_count: int
    settings: dict[str, str]


def _item_json(item: Item) -> str:
    return json.dumps(item.as_dict(), separators=(",", ":"))


def _item(text: str) -> Item:
    data = json.loads(text)
    return Item(
        uid=data["uid"],
        plan=data["plan"],
        args=data.get("args", {}),
        metadata=data.get("metadata", {}),
        user=data.get("user", ""),
        host=data.get("host", ""),
        added=float(data.get("added", 0.0)),
    )


def _record(row: Sequence[Any]) -> Record:
    item, state, started, ended, scan_ids, run_uids, message = row
    return Record(
        item=_item(item),
        state=ItemState(state),
        started=started,
        ended=ended,
        scan_ids=tuple(json.loads(scan_ids)),
        run_uids=tuple(json.loads(run_uids)),
        message=message,
    )


class QueueStore:
    """The queue's SQLite database (``":memory:"`` for none on disk).

    Not thread-safe: one thread at a time (PlanQueue uses one thread for all calls).
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- one transaction each ---------------------------------------------------------

    def _transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                db.execute(sql, params)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _insert(item: Item, front: bool) -> tuple[str, Sequence[Any]]:
        where = "MIN(position) - 1" if front else "MAX(position) + 1"
        return (
            "INSERT INTO items (uid, state, position, item) VALUES (?, 'queued', "
            f"(SELECT COALESCE({where}, 0) FROM items WHERE position IS NOT NULL), ?)",
            (item.uid, _item_json(item)),
        )

    def add(self, item: Item, *, front: bool = False) -> None:
        """Queue an item at the back (or the front); sqlite3.IntegrityError if its uid is
        taken."""
        self._transaction([self._insert(item, front)])

    def reorder(self, uids: Sequence[str]) -> None:
        """Give the queued items this order (every queued uid, each once)."""
        self._transaction(
            ("UPDATE items SET position = ? WHERE uid = ? AND state = 'queued'", (i, uid))
            for i, uid in enumerate(uids)
        )

    def remove(self, uids: Sequence[str]) -> None:
        """Take queued items out (they never ran: no history entry)."""
        self._transaction(
            ("DELETE FROM items WHERE uid = ? AND state = 'queued'", (uid,)) for uid in uids
        )

    def transition(
        self,
        *,
        finished: Record | None = None,
        started: tuple[str, float] | None = None,
        append: Item | None = None,
    ) -> None:
        """In one transaction: an item ends (into the history), another starts, one is
        appended (loop mode). Whatever a kill interrupts, no item is both queued and run."""
        statements: list[tuple[str, Sequence[Any]]] = []
        if finished is not None:
            statements.append(self._finish(finished))
        if append is not None:
            statements.append(self._insert(append, front=False))
        if started is not None:
            uid, when = started
            statements.append(
                (
                    "UPDATE items SET state = 'running', position = NULL, started = ? "
                    "WHERE uid = ? AND state = 'queued'",
                    (when, uid),
                )
            )
        self._transaction(statements)

    @staticmethod
    def _finish(record: Record) -> tuple[str, Sequence[Any]]:
        if record.state not in FINAL_STATES:
            raise ValueError(f"{record.state.value} is not a final state")
        return (
            "INSERT INTO items (uid, state, position, done, item, started, ended, scan_ids, "
            "run_uids, message) VALUES (?, ?, NULL, "
            "(SELECT COALESCE(MAX(done), 0) + 1 FROM items), ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(uid) DO UPDATE SET state = excluded.state, position = NULL, "
            "done = excluded.done, started = excluded.started, ended = excluded.ended, "
            "scan_ids = excluded.scan_ids, run_uids = excluded.run_uids, "
            "message = excluded.message",
            (
                record.item.uid,
                record.state.value,
                _item_json(record.item),
                record.started,
                record.ended,
                json.dumps(list(record.scan_ids)),
                json.dumps(list(record.run_uids)),
                record.message,
            ),
        )

    def add_run(self, uid: str, run_uids: Sequence[str], scan_ids: Sequence[int]) -> None:
        """Note the runs a running item has opened so far (so that a crash keeps them)."""
        self._transaction(
            [
                (
                    "UPDATE items SET run_uids = ?, scan_ids = ? WHERE uid = ?",
                    (json.dumps(list(run_uids)), json.dumps(list(scan_ids)), uid),
                )
            ]
        )

    def clear_history(self) -> int:
        """Forget every ended item; how many there were."""
        count = self.history_count()
        self._transaction([("DELETE FROM items WHERE done IS NOT NULL", ())])
        return count

    @staticmethod
    def _setting(key: str, value: str) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def set_setting(self, key: str, value: str) -> None:
        self._transaction([self._setting(key, value)])

    # -- reading ----------------------------------------------------------------------

    def queued(self) -> list[Item]:
        rows = self._db.execute(
            "SELECT item FROM items WHERE state = 'queued' ORDER BY position"
        ).fetchall()
        return [_item(row[0]) for row in rows]

    def running(self) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM items WHERE state = 'running' ORDER BY started"
        ).fetchall()
        return [_record(row) for row in rows]

    def history(self, limit: int) -> list[Record]:
        """The last ``limit`` ended items, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM items WHERE done IS NOT NULL ORDER BY done DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_record(row) for row in reversed(rows)]

    def history_count(self) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM items WHERE done IS NOT NULL").fetchone()[0]
        )

    def lookup(self, uid: str) -> Record | None:
        """The item with this uid: queued, running or ended; None if never seen (or
        removed, or its history cleared)."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else _record(row)

    def settings(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM settings").fetchall())

    def snapshot(self, history_limit: int) -> Snapshot:
        return Snapshot(
            self.queued(),
            self.running(),
            self.history(history_limit),
            self.history_count(),
            self.settings(),
        )
