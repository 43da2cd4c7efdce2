"""Answers ``estimate`` requests off the server's loop.

Planning a job needs the backend's engine: a cached model lookup (a load for weights
not used yet) or, with ``--ray``, a round trip to an actor. So one thread takes the
requests in turn and hands each reply to ``send``, which queues it for the loop (the
only thread that touches the socket). A few requests may wait; more are refused with
``queue_full``, so a dialog that asks on every keystroke cannot pile work up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from impasto.daemon.backend import Backend
from impasto.daemon.scheduler import Out
from impasto.shared import protocol
from impasto.shared.errors import INTERNAL, QUEUE_FULL, ImpastoError
from impasto.shared.options import JobOptions

log = logging.getLogger("impasto.daemon.estimates")

MAX_WAITING = 32  # estimates queued at once, over all clients


@dataclass
class _Ask:
    identity: bytes
    req: int | None
    options: JobOptions
    height: int
    width: int
    n_styles: int


class Estimator:
    """One thread answering estimates with ``backend.estimate``; replies go to ``send``."""

    def __init__(self, backend: Backend, send: Callable[[Out], None]):
        self.backend = backend
        self.send = send
        self._waiting: queue.Queue[_Ask | None] = queue.Queue(MAX_WAITING)
        self._thread: threading.Thread | None = None

    def ask(
        self,
        identity: bytes,
        req: int | None,
        options: JobOptions,
        height: int,
        width: int,
        n_styles: int,
    ) -> None:
        """Queue one estimate (options already checked); raises queue_full when busy."""
        if self._thread is None:  # started on first use: most daemons never get one
            self._thread = threading.Thread(target=self._run, name="impasto-estimates")
            self._thread.daemon = True
            self._thread.start()
        try:
            self._waiting.put_nowait(_Ask(identity, req, options, height, width, n_styles))
        except queue.Full:
            raise ImpastoError(
                f"{MAX_WAITING} estimates are already waiting; ask again in a moment",
                QUEUE_FULL,
            ) from None

    def stop(self) -> None:
        if self._thread is not None:
            # Full: a daemon thread, it ends with the process.
            with contextlib.suppress(queue.Full):
                self._waiting.put_nowait(None)

    def _run(self) -> None:
        while (ask := self._waiting.get()) is not None:
            self.send(self._answer(ask))

    def _answer(self, ask: _Ask) -> Out:
        try:
            info = self.backend.estimate(ask.options, ask.height, ask.width, ask.n_styles)
            fields = {"req": ask.req, "info": info}
            return Out(ask.identity, protocol.ESTIMATE_REPLY, fields)
        except ImpastoError as exc:
            error = exc
        except Exception as exc:  # a bug: answer it and keep serving
            log.exception("estimate failed")
            error = ImpastoError(f"daemon error: {type(exc).__name__}: {exc}", INTERNAL)
        return Out(ask.identity, protocol.ERROR, protocol.error_fields(error, ask.req))
