"""The crash-safe job journal: sqlite3 in WAL mode, in the daemon's state folder.

A job is written here (inputs, options, owner) before the client hears ``accepted``; its
images arrive chunk by chunk straight into blobs (``zeroblob`` then incremental blob I/O),
so an upload in progress holds no pixels in memory. A running job's best image so far is
kept as a checkpoint, and results and failures stay until their retention ends. After a
``kill -9`` the next daemon reads the journal back and finishes what was accepted.

``synchronous=NORMAL`` in WAL mode: a committed job survives the process dying at any
point (what kill -9 and a crash do); only a power cut may lose the last commits.
Only the server's loop thread uses a Journal.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto.shared.rawimage import RawImage

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    serial INTEGER NOT NULL,
    owner TEXT NOT NULL,
    client TEXT NOT NULL,
    options TEXT NOT NULL,          -- JobOptions.to_dict() as JSON
    meta TEXT NOT NULL,             -- n_styles, has_init, frame_size, frame_depth, depth
    state TEXT NOT NULL,            -- uploading, queued, running, done, failed, cancelled
    created REAL NOT NULL,
    finished REAL,
    result TEXT,                    -- result fields (JSON) once done
    error_code TEXT,
    error_message TEXT
);
CREATE TABLE IF NOT EXISTS images (
    job_id TEXT NOT NULL,
    role TEXT NOT NULL,             -- input, checkpoint, result
    idx INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL,
    channels INTEGER NOT NULL, depth INTEGER NOT NULL,
    iteration INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, role, idx)
);
"""


@dataclass
class JobRow:
    id: str
    serial: int
    owner: str
    client: str
    options: dict[str, Any]
    meta: dict[str, Any]
    state: str
    created: float
    finished: float | None
    result: dict[str, Any] | None
    error: tuple[str, str] | None


class Journal:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- writing --------------------------------------------------------------------------
    def begin_upload(
        self,
        job_id: str,
        serial: int,
        owner: str,
        client: str,
        options: dict,
        meta: dict,
        descriptors: Sequence[Sequence[int]],
    ) -> None:
        """A job row in state ``uploading`` and an empty blob per input image."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO jobs (id, serial, owner, client, options, meta, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?)",
                (job_id, serial, owner, client, json.dumps(options), json.dumps(meta), time.time()),
            )
            for i, (w, h, c, d) in enumerate(descriptors):
                self.db.execute(
                    "INSERT INTO images (job_id, role, idx, width, height, channels, depth, data) "
                    "VALUES (?, 'input', ?, ?, ?, ?, ?, zeroblob(?))",
                    (job_id, i, w, h, c, d, w * h * c * d // 8),
                )

    def write_chunk(self, job_id: str, idx: int, offset: int, data) -> None:
        row = self.db.execute(
            "SELECT rowid FROM images WHERE job_id=? AND role='input' AND idx=?", (job_id, idx)
        ).fetchone()
        with self.db.blobopen("images", "data", row[0]) as blob:
            blob.seek(offset)
            blob.write(data)

    def set_state(self, job_id: str, state: str) -> None:
        self.db.execute("UPDATE jobs SET state=? WHERE id=?", (state, job_id))

    def save_checkpoint(self, job_id: str, iteration: int, image: RawImage) -> None:
        self._put_image(job_id, "checkpoint", 0, image, iteration)

    def save_result(self, job_id: str, state: str, fields: dict, image: RawImage) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self._put_image(job_id, "result", 0, image)
            self.db.execute(
                "UPDATE jobs SET state=?, finished=?, result=? WHERE id=?",
                (state, time.time(), json.dumps(fields), job_id),
            )
            self.db.execute(
                "DELETE FROM images WHERE job_id=? AND role IN ('input', 'checkpoint')", (job_id,)
            )

    def save_failure(self, job_id: str, state: str, code: str, message: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "UPDATE jobs SET state=?, finished=?, error_code=?, error_message=? WHERE id=?",
                (state, time.time(), code, message, job_id),
            )
            self.db.execute("DELETE FROM images WHERE job_id=?", (job_id,))

    def delete(self, job_id: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM images WHERE job_id=?", (job_id,))
            self.db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def _put_image(
        self, job_id: str, role: str, idx: int, image: RawImage, iteration: int = 0
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO images "
            "(job_id, role, idx, width, height, channels, depth, iteration, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                role,
                idx,
                image.width,
                image.height,
                image.channels,
                image.depth,
                iteration,
                bytes(image.data),
            ),
        )

    # -- reading --------------------------------------------------------------------------
    def images(self, job_id: str, role: str) -> list[RawImage]:
        rows = self.db.execute(
            "SELECT width, height, channels, depth, data FROM images "
            "WHERE job_id=? AND role=? ORDER BY idx",
            (job_id, role),
        ).fetchall()
        return [RawImage(w, h, c, d, data) for w, h, c, d, data in rows]

    def checkpoint(self, job_id: str) -> tuple[int, RawImage] | None:
        row = self.db.execute(
            "SELECT iteration, width, height, channels, depth, data FROM images "
            "WHERE job_id=? AND role='checkpoint'",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        iteration, w, h, c, d, data = row
        return iteration, RawImage(w, h, c, d, data)

    def rows(self) -> list[JobRow]:
        """Every journalled job, oldest first (what a restarted daemon resumes)."""
        out = []
        for r in self.db.execute(
            "SELECT id, serial, owner, client, options, meta, state, created, finished, "
            "result, error_code, error_message FROM jobs ORDER BY serial"
        ):
            out.append(
                JobRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    json.loads(r[4]),
                    json.loads(r[5]),
                    r[6],
                    r[7],
                    r[8],
                    json.loads(r[9]) if r[9] else None,
                    (r[10], r[11]) if r[10] else None,
                )
            )
        return out

    def max_serial(self) -> int:
        row = self.db.execute("SELECT MAX(serial) FROM jobs").fetchone()
        return int(row[0] or 0)
