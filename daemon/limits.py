"""What one daemon lets its clients make it hold, and rate-limited logging of refusals.

Every cap is checked from a request's header, before anything is allocated or stored,
and a refusal (``queue_full``) names the limit and the flag that raises it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from impasto.shared.errors import QUEUE_FULL, ImpastoError

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    # Queued jobs and their input bytes (kept on disk in the journal, not in memory).
    jobs_per_client: int = 1000
    jobs_total: int = 10_000
    bytes_per_client: int = 4096 * MiB
    bytes_total: int = 16384 * MiB
    uploads_per_client: int = 4  # submits whose images are still arriving
    uploads_total: int = 64
    upload_idle_s: float = 30.0  # an upload silent this long is dropped
    finished_kept: int = 10_000  # finished jobs remembered (oldest forgotten first)

    def check_submit(
        self,
        jobs: int,
        jobs_total: int,
        nbytes: int,
        bytes_mine: int,
        bytes_total: int,
        what: str = "its images",
    ) -> None:
        """Raise queue_full if one more job of ``nbytes`` would pass a cap; a job that
        passes one on its own is told so (waiting would not help), with ``what`` saying
        what its bytes are."""
        for cap, what_cap, flag in (
            (self.bytes_per_client, "queued MiB per client", "--max-queued-mb"),
            (self.bytes_total, "queued MiB in all", "--max-queued-mb-total"),
        ):
            if nbytes > cap:
                raise ImpastoError(
                    f"this job is too large for the daemon: {what} take {nbytes / MiB:.0f} "
                    f"MiB of its disk, and it takes at most {cap // MiB} {what_cap} (its "
                    f"{flag}); send fewer or smaller images",
                    QUEUE_FULL,
                )
        for used, cap, what, flag in (
            (jobs + 1, self.jobs_per_client, "queued jobs per client", "--max-queued-jobs"),
            (jobs_total + 1, self.jobs_total, "queued jobs in all", "--max-queued-jobs-total"),
            (
                bytes_mine + nbytes,
                self.bytes_per_client,
                "queued MiB per client",
                "--max-queued-mb",
            ),
            (bytes_total + nbytes, self.bytes_total, "queued MiB in all", "--max-queued-mb-total"),
        ):
            if used > cap:
                shown = f"{cap // MiB} {what}" if "MiB" in what else f"{cap} {what}"
                raise ImpastoError(
                    f"the queue is full: the daemon takes at most {shown} (its {flag}); "
                    "wait for jobs to finish or cancel some",
                    QUEUE_FULL,
                )

    def check_uploads(self, mine: int, total: int) -> None:
        if mine >= self.uploads_per_client or total >= self.uploads_total:
            cap = self.uploads_per_client if mine >= self.uploads_per_client else self.uploads_total
            raise ImpastoError(
                f"too many uploads at once: the daemon takes at most {cap} "
                f"{'per client' if cap == self.uploads_per_client else 'in all'}; "
                "finish or abandon one first",
                QUEUE_FULL,
            )


class RateLimitedLog:
    """Log refused requests at most ``burst`` times per ``window`` seconds, then one line
    saying how many were suppressed: a flood of bad requests cannot fill the disk."""

    def __init__(self, logger: logging.Logger, burst: int = 20, window: float = 10.0):
        self.log, self.burst, self.window = logger, burst, window
        self._start = time.monotonic()
        self._count = 0
        self._suppressed = 0

    def refused(self, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._start > self.window:
            if self._suppressed:
                self.log.warning(
                    "%d more refused requests in %.0fs not logged", self._suppressed, self.window
                )
            self._start, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count <= self.burst:
            self.log.info(fmt, *args)
        else:
            self._suppressed += 1
