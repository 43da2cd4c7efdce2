"""A worker thread per device: runs jobs on the engine, reports back to the server loop.

The worker is the only place that touches torch; it imports the engine lazily (so the
daemon answers hello and status at once) and warms the model up in the background. It
turns the engine's Progress into protocol fields plus a RawImage frame resized to what
the client asked for, catches every engine exception (the job fails, the daemon lives),
and retries a job that ran out of memory at a lower resolution.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from impasto.daemon.jobs import Job
from impasto.shared.errors import (
    CANCELLED,
    INTERNAL,
    OUT_OF_MEMORY,
    ImpastoError,
)
from impasto.shared.options import DEFAULT_MAX_PIXELS
from impasto.shared.rawimage import RawImage

log = logging.getLogger("impasto.daemon.worker")

OOM_RETRIES = 2  # each retry shrinks the long edge to OOM_SHRINK of the last try
OOM_SHRINK = 0.7
MIN_OOM_SIZE = 64

# What a worker reports; the server loop reads these from its queue.
READY, STARTED, PROGRESS, DONE, FAILED = "ready", "started", "progress", "done", "failed"


def resize_frame(array, long_edge: int | None):
    """Shrink a float (H, W, C) array so its long edge is at most ``long_edge``."""
    import numpy as np
    from PIL import Image

    h, w = array.shape[:2]
    if not long_edge or max(h, w) <= long_edge:
        return array
    scale = long_edge / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(array[..., c], dtype=np.float32)).resize(
                size, Image.Resampling.BILINEAR, reducing_gap=2.0
            )
        )
        for c in range(array.shape[2])
    ]
    return np.stack(channels, axis=2)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, ImpastoError):
        return exc.code == OUT_OF_MEMORY
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class Worker(threading.Thread):
    """Runs one job at a time on ``device``; ``report(kind, job, payload)`` goes to the loop.

    ``report`` must be thread-safe (the server's queue plus a wake-up message).
    """

    def __init__(
        self,
        device: str,
        report: Callable[[str, Job | None, Any], None],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        warmup: bool = True,
    ):
        super().__init__(name=f"impasto-worker-{device}", daemon=True)
        self.device = device
        self.report = report
        self.max_pixels = max_pixels
        self.warmup = warmup
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.job: Job | None = None  # set and cleared by the server loop
        self.engine = None
        self.engine_error: ImpastoError | None = None
        self.model_loaded = False
        self.resolved_device = ""  # what "auto" turned out to be, once known

    # -- thread ---------------------------------------------------------------------------
    def run(self) -> None:
        self._load()
        while True:
            job = self.inbox.get()
            if job is None:
                return
            try:
                self._run_job(job)
            except BaseException as exc:  # never let the thread die with a job half-done
                log.error("job %s: worker error\n%s", job.id, traceback.format_exc())
                self.report(FAILED, job, (INTERNAL, f"worker error: {type(exc).__name__}: {exc}"))

    def stop(self) -> None:
        self.inbox.put(None)

    def _load(self) -> None:
        started = time.monotonic()
        try:
            from impasto.daemon.engine import Engine

            self.engine = Engine(max_pixels=self.max_pixels)
            if self.warmup:
                self._warm_up()
        except ImpastoError as exc:
            self.engine_error = exc
        except Exception as exc:
            log.error("engine failed to load\n%s", traceback.format_exc())
            self.engine_error = ImpastoError(
                f"the engine failed to load: {type(exc).__name__}: {exc}", INTERNAL
            )
        if self.engine_error is None:
            log.info("engine ready on %s in %.1fs", self.device, time.monotonic() - started)
        else:
            log.error("engine unavailable on %s: %s", self.device, self.engine_error)
        self.report(READY, None, {"device": self.device, "error": self.engine_error})

    def _warm_up(self) -> None:
        """Load the model and run one tiny step, so the first real job starts at once."""
        import numpy as np

        from impasto.daemon.engine import CancelToken
        from impasto.shared.options import JobOptions

        tiny = np.full((32, 32, 3), 0.5, np.float32)
        options = JobOptions(size=32, iterations=1, frames=0, scales=1, device=self.device)
        result = self.engine.run(tiny, [tiny], options, on_progress=None, cancel=CancelToken())
        self.resolved_device = result.device_label
        self.model_loaded = True

    # -- one job --------------------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        if self.engine is None:
            raise self.engine_error or ImpastoError("the engine is not loaded", INTERNAL)
        from impasto.daemon.engine import CancelToken

        options = job.options
        if options.device == "auto" and self.device != "auto":
            options = options.replace(device=self.device)
        content = job.content.to_numpy()
        styles = [s.to_numpy() for s in job.styles]
        init = job.init_image.to_numpy() if job.init_image is not None else None
        depth = job.content.depth
        self.report(STARTED, job, None)

        for attempt in range(OOM_RETRIES + 1):
            token = CancelToken()
            job_token = _JobCancel(job, token)
            try:
                result = self.engine.run(
                    content,
                    styles,
                    options,
                    on_progress=job_token.progress_callback(self._progress),
                    cancel=token,
                    init_image=init,
                )
                break
            except Exception as exc:
                if is_out_of_memory(exc) and attempt < OOM_RETRIES:
                    size = options.size or max(job.content.width, job.content.height)
                    smaller = int(size * OOM_SHRINK)
                    if smaller >= MIN_OOM_SIZE:
                        log.warning(
                            "job %s: out of memory at %dpx, retrying at %dpx", job.id, size, smaller
                        )
                        options = options.replace(size=smaller)
                        _free_device_memory()
                        continue
                if is_out_of_memory(exc):
                    _free_device_memory()
                    size = options.size or max(job.content.width, job.content.height)
                    self.report(
                        FAILED,
                        job,
                        (
                            OUT_OF_MEMORY,
                            (
                                f"out of memory on {self.device} even at {size}px; "
                                "choose a smaller size or another device"
                            ),
                        ),
                    )
                    return
                if isinstance(exc, ImpastoError):
                    self.report(FAILED, job, (exc.code, str(exc)))
                else:
                    log.error("job %s: engine error\n%s", job.id, traceback.format_exc())
                    why = f"engine error: {type(exc).__name__}: {exc}"
                    self.report(FAILED, job, (INTERNAL, why))
                return

        if result.image is None:
            self.report(FAILED, job, (CANCELLED, "cancelled before the first step"))
            return
        image = RawImage.from_numpy(result.image, depth)
        fields = {
            "job_id": job.id,
            "iterations": int(result.iterations),
            "losses": _losses(result.losses),
            "cancelled": bool(result.cancelled),
            "elapsed": float(result.elapsed),
            "device": result.device_label or self.device,
        }
        self.resolved_device = self.resolved_device or fields["device"]
        self.model_loaded = True
        self.report(DONE, job, (fields, image))

    def _progress(self, job: Job, p: Any, job_token: _JobCancel) -> None:
        job_token.check()
        fields = {
            "job_id": job.id,
            "iteration": int(p.iteration),
            "total": int(p.total),
            "scale": int(p.scale),
            "n_scales": int(p.n_scales),
            "width": int(getattr(p, "width", 0) or 0),
            "height": int(getattr(p, "height", 0) or 0),
            "losses": _losses(p.losses),
            "elapsed": float(p.elapsed),
            "eta": None if p.eta is None else max(0.0, float(p.eta)),
        }
        frame = None
        if getattr(p, "image", None) is not None:
            frame = RawImage.from_numpy(resize_frame(p.image, job.frame_size), job.frame_depth)
        self.report(PROGRESS, job, (fields, frame))


class _JobCancel:
    """Links the job's cancel flag (set by the loop) to the engine's CancelToken."""

    def __init__(self, job: Job, token: Any):
        self.job, self.token = job, token
        job.token = token  # the loop cancels through it directly from now on
        self.check()

    def progress_callback(self, report: Callable[[Job, Any, _JobCancel], None]):
        return lambda progress: report(self.job, progress, self)

    def check(self) -> None:
        if self.job.cancel_event.is_set():
            self.token.cancel()


def _losses(losses: Any) -> dict[str, float]:
    out = {}
    for key, value in dict(losses or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _free_device_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
