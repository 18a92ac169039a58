"""The run ledger: which submission was graded from which bytes, and its result.

A small SQLite file in the output folder (``state.sqlite``), written only by the coordinator,
one transaction per batch of results, *after* the files and the gradebook rows of that batch
are committed. A run killed at any instant therefore leaves every ledger row backed by a
complete grade; a submission without a row (or whose bytes or master changed) is graded again
on the next run, and rewriting its grade in the gradebook is idempotent (one row per cell and
student). That is how an interrupted run loses no grade and doubles none.
"""

from __future__ import annotations

import json
import sqlite3
import time

__all__ = ["LedgerResults", "State"]


class State:
    """Ledger of graded submissions, keyed by (student, assignment, notebook).

    Parameters
    ----------
    path : str
        The SQLite file; created if missing.

    Examples
    --------
    >>> state = State(":memory:")
    >>> state.put({"student": "ada", "assignment": "a1", "notebook": "a1", "score": 1.0}, "k1")
    >>> state.key("ada", "a1", "a1")
    'k1'
    >>> [r["score"] for r in state.results()]
    [1.0]
    """

    def __init__(self, path: str):
        # autocommit; every write below is its own transaction
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA user_version")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (student TEXT, assignment TEXT, notebook TEXT, "
            "key TEXT, graded_at REAL, result TEXT, PRIMARY KEY (student, assignment, notebook))"
        )

    def key(self, student: str, assignment: str, notebook: str) -> str | None:
        """The key the submission was last graded under, or ``None``."""
        row = self._db.execute(
            "SELECT key FROM results WHERE student=? AND assignment=? AND notebook=?",
            (student, assignment, notebook),
        ).fetchone()
        return row[0] if row else None

    def put(self, result: dict, key: str) -> None:
        """Record (or replace) the result of one submission in one transaction."""
        self.put_many([(result, key)])

    def put_many(self, items) -> None:
        """Record (or replace) several ``(result, key)`` pairs in one transaction."""
        now = time.time()
        rows = [
            (
                result["student"],
                result["assignment"],
                result["notebook"],
                key,
                now,
                json.dumps(result, sort_keys=True),
            )
            for result, key in items
        ]
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def results(self):
        """Every recorded result, ordered by student, assignment, notebook (a generator)."""
        cursor = self._db.execute(
            "SELECT result FROM results ORDER BY student, assignment, notebook"
        )
        for (text,) in cursor:
            yield json.loads(text)

    def close(self) -> None:
        """Close the database."""
        self._db.close()


class LedgerResults:
    """The results of some submissions, read from a ledger file each time they are iterated.

    What ``grade`` returns and writes its outputs from: iterating streams the rows from SQLite
    in (student, assignment, notebook) order, so a class of any size is never in memory at
    once. Only the keys of the submissions to include are kept (a few dozen bytes each).

    Parameters
    ----------
    path : str
        The ledger (``state.sqlite``).
    keys : set of tuple
        ``(student, assignment, notebook)`` of the submissions to include.
    """

    def __init__(self, path: str, keys: set[tuple[str, str, str]]):
        self.path = path
        self.keys = frozenset(keys)

    def __iter__(self):
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT student, assignment, notebook, result FROM results "
                "ORDER BY student, assignment, notebook"
            )
            for student, assignment, notebook, text in rows:
                if (student, assignment, notebook) in self.keys:
                    yield json.loads(text)
        finally:
            db.close()

    def __len__(self) -> int:
        return sum(1 for _ in self._present())

    def _present(self):
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            for row in db.execute("SELECT student, assignment, notebook FROM results"):
                if row in self.keys:
                    yield row
        finally:
            db.close()

