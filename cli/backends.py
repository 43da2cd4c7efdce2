"""Where a CLI job runs: in a daemon that answers, or in this process.

Both backends take the same inputs, report the client's ``Progress`` events and return
the client's ``Result``, so the command and its progress bar do not care which ran.
Ctrl-C cancels the job and still returns the best image so far.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from impasto.plugin.client import Client, Progress, Result
from impasto.shared.errors import DAEMON_UNAVAILABLE, ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage

OnProgress = Callable[[Progress], None]
AUTO_CONNECT_TIMEOUT = 0.5  # seconds to wait for a daemon before running locally


class DaemonBackend:
    """Runs the job on a daemon through the shared client."""

    def __init__(self, client: Client):
        self.client = client
        self.where = f"daemon at {client.endpoint}"
        self.interrupted = False

    def run(
        self,
        content: RawImage,
        styles: list[RawImage],
        options: JobOptions,
        on_progress: OnProgress,
        init_image: RawImage | None = None,
    ) -> Result:
        job_id = self.client.submit(content, styles, options, init_image=init_image)

        def forward(event) -> None:
            if isinstance(event, Progress):
                on_progress(event)

        try:
            return self.client.wait(job_id, on_event=forward)
        except KeyboardInterrupt:
            # First Ctrl-C: stop the job but keep what it has painted so far.
            self.interrupted = True
            self.client.cancel(job_id)
            return self.client.wait(job_id, on_event=forward)

    def estimate(self, width: int, height: int, options: JobOptions, n_styles: int) -> dict:
        """The daemon engine's plan for the job (Engine.preflight), nothing run."""
        return self.client.estimate(width, height, options, n_styles)

    def close(self) -> None:
        self.client.close()


class LocalBackend:
    """Runs the engine in this process, on a worker thread so Ctrl-C stays responsive."""

    where = "this process"

    def __init__(self):
        from impasto.daemon.engine import Engine

        self.engine = Engine()
        self.interrupted = False

    def run(
        self,
        content: RawImage,
        styles: list[RawImage],
        options: JobOptions,
        on_progress: OnProgress,
        init_image: RawImage | None = None,
    ) -> Result:
        from impasto.daemon.engine import CancelToken

        cancel = CancelToken()
        outcome: dict = {}

        def report(p) -> None:
            frame = None if p.image is None else RawImage.from_numpy(p.image, content.depth)
            on_progress(
                Progress(
                    "local",
                    p.iteration,
                    p.total,
                    p.scale,
                    p.n_scales,
                    dict(p.losses),
                    p.elapsed,
                    p.eta,
                    frame,
                    p.width,
                    p.height,
                )
            )

        finished = threading.Event()

        def work() -> None:
            try:
                outcome["result"] = self.engine.run(
                    content.to_numpy(),
                    [s.to_numpy() for s in styles],
                    options,
                    on_progress=report,
                    cancel=cancel,
                    init_image=None if init_image is None else init_image.to_numpy(),
                )
            except BaseException as exc:  # handed to the main thread below
                outcome["error"] = exc
            finally:
                finished.set()

        # Wait on an Event, not Thread.join: a Ctrl-C inside join() can leave the
        # thread looking finished while it still runs.
        threading.Thread(target=work, name="impasto-engine", daemon=True).start()
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.interrupted = True
            cancel.cancel()
            while not finished.wait(0.2):
                pass
        if "error" in outcome:
            raise outcome["error"]
        r = outcome["result"]
        return Result(
            "local",
            RawImage.from_numpy(r.image, content.depth),
            r.iterations,
            dict(r.losses),
            r.cancelled,
            r.elapsed,
            r.device_label,
        )

    def estimate(self, width: int, height: int, options: JobOptions, n_styles: int) -> dict:
        """This process's engine's plan for the job (Engine.preflight), nothing run."""
        from impasto.daemon.engine import devices

        info = self.engine.preflight(height, width, options, n_styles)
        return {**info, "device": str(devices.resolve_device(options.device))}

    def close(self) -> None:
        pass


def choose_backend(mode: str, endpoint: str | None, note: Callable[[str], None]):
    """``mode``: 'local', 'daemon' (required) or 'auto' (daemon if one answers)."""
    if mode == "local":
        return LocalBackend()
    timeout = 10.0 if mode == "daemon" else AUTO_CONNECT_TIMEOUT
    client = Client(endpoint, timeout=timeout)
    try:
        client.connect()
    except ImpastoError as exc:
        client.close()
        if mode == "daemon" or exc.code != DAEMON_UNAVAILABLE:
            if exc.code == DAEMON_UNAVAILABLE:
                raise ImpastoError(
                    f"{exc} (start one with `impasto daemon start`)", DAEMON_UNAVAILABLE
                ) from exc
            raise
        note("no daemon answers; running in this process (start one: impasto daemon start)")
        return LocalBackend()
    # A job may run for long; from here on only a dead daemon should time out.
    client.timeout = max(client.timeout, 10.0)
    return DaemonBackend(client)
