"""Where a CLI job runs: in a daemon that answers, or in this process.

Both backends take the same inputs, report the client's ``Progress`` (and, for a
sequence, ``FrameDone``) events and return the client's ``Result``, so the command and
its progress bar do not care which ran. Ctrl-C cancels the job and still returns the
best image so far (a sequence: keeps the frames already finished).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from impasto.plugin.client import Client, FrameDone, Progress, Result
from impasto.shared.errors import CANCELLED, DAEMON_UNAVAILABLE, ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import SequenceOptions

OnProgress = Callable[[Progress], None]
OnFrame = Callable[[FrameDone], None]
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
        return self._follow(job_id, on_progress, None)

    def run_sequence(
        self,
        frames: Sequence[RawImage],
        styles: list[RawImage],
        options: JobOptions,
        sequence: SequenceOptions,
        on_progress: OnProgress,
        on_frame: OnFrame,
    ) -> None:
        """Upload the frames (read one at a time) and hand each finished one to
        ``on_frame``; cancelled before the first frame finished is not an error."""
        job_id = self.client.submit_sequence(frames, styles, options, sequence)
        try:
            self._follow(job_id, on_progress, on_frame)
        except ImpastoError as exc:
            if not (self.interrupted and exc.code == CANCELLED):
                raise

    def _follow(self, job_id: str, on_progress: OnProgress, on_frame: OnFrame | None) -> Result:
        def forward(event) -> None:
            if isinstance(event, Progress):
                on_progress(event)
            elif isinstance(event, FrameDone) and on_frame is not None:
                on_frame(event)

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

        def report(p) -> None:
            on_progress(_progress(p, content.depth))

        def work():
            return self.engine.run(
                content.to_numpy(),
                [s.to_numpy() for s in styles],
                options,
                on_progress=report,
                cancel=cancel,
                init_image=None if init_image is None else init_image.to_numpy(),
            )

        r = self._interruptible(work, cancel)
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
        """This process's engine's plan for the job (Engine.preflight), its time at a
        speed measured first (Engine.calibrate, a second or two on a CPU)."""
        from impasto.daemon.engine import devices

        info = self.engine.preflight(height, width, options, n_styles)
        if not info["speed_measured"]:
            self.engine.calibrate(options.device, options.precision)
            info = self.engine.preflight(height, width, options, n_styles)
        return {**info, "device": str(devices.resolve_device(options.device))}

    def run_sequence(
        self,
        frames: Sequence[RawImage],
        styles: list[RawImage],
        options: JobOptions,
        sequence: SequenceOptions,
        on_progress: OnProgress,
        on_frame: OnFrame,
    ) -> None:
        """Every frame in this process, read one at a time; ``on_frame`` as each ends."""
        from impasto.daemon.engine import CancelToken
        from impasto.daemon.engine.sequence import stylise_sequence

        cancel = CancelToken()
        count = len(frames)

        def report(index: int, p) -> None:
            on_progress(_progress(p, 8, index, count))

        def work() -> None:
            contents = (frame.to_numpy() for frame in frames)
            style_arrays = [s.to_numpy() for s in styles]
            for item in stylise_sequence(
                self.engine, contents, style_arrays, options, sequence, report, cancel
            ):
                r = item.result
                image = RawImage.from_numpy(r.image)
                done = FrameDone(
                    "local",
                    item.index,
                    count,
                    image,
                    r.iterations,
                    dict(r.losses),
                    r.elapsed,
                    item.warm,
                )
                on_frame(done)

        self._interruptible(work, cancel)

    def _interruptible(self, work: Callable, cancel) -> Any:
        """``work()`` on a thread; a Ctrl-C sets ``cancel`` and waits for it to stop."""
        outcome: dict = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["result"] = work()
            except BaseException as exc:  # handed to the main thread below
                outcome["error"] = exc
            finally:
                finished.set()

        # Wait on an Event, not Thread.join: a Ctrl-C inside join() can leave the
        # thread looking finished while it still runs.
        thread = threading.Thread(target=run, name="impasto-engine", daemon=True)
        thread.start()
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.interrupted = True
            cancel.cancel()
            while not finished.wait(0.2):
                pass
        # Let the thread end before the interpreter may: exiting while it still unwound
        # aborted the process ("terminate called without an active exception").
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

    def close(self) -> None:
        pass


def _progress(p, depth: int, index: int | None = None, count: int = 0) -> Progress:
    """The client's Progress for an engine progress report."""
    frame = None if p.image is None else RawImage.from_numpy(p.image, depth)
    return Progress(
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
        index,
        count,
    )


class InOrder(Sequence[RawImage]):
    """A FrameSource (or any frame list) read front to back through one iterator: the
    client reads frames by index, in order, and an animated file should be decoded
    once, not seeked from its start for every frame."""

    def __init__(self, source):
        self.source = source
        self._iter: Iterator[RawImage] | None = None
        self._next = 0

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[RawImage]:
        return iter(self.source)

    def __getitem__(self, index):  # type: ignore[override]
        if not isinstance(index, int) or index < 0:
            raise TypeError("InOrder takes non-negative frame indices")
        if index == 0:
            self._iter, self._next = iter(self.source), 0
        if self._iter is None or index != self._next:
            return self.source[index]  # out of order: read on its own
        self._next = index + 1
        return next(self._iter)


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
