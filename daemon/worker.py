"""The thread backend: a worker thread per device runs tasks on the engine in-process.

A backend is what the scheduler hands jobs to (see ``Backend`` in backend.py): this one
is the only place that touches torch; it imports the engine lazily (so the daemon answers
hello and status at once) and warms the model up in the background. It turns the
engine's Progress into protocol fields plus a RawImage frame resized to what the client
asked for, checkpoints the best image every few seconds, catches every engine exception
(the job fails, the daemon lives), and retries a job that ran out of memory smaller.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from impasto.daemon.backend import (
    CHECKPOINT,
    DONE,
    FAILED,
    FRAME,
    PROGRESS,
    READY,
    STARTED,
    Report,
    Task,
)
from impasto.shared.errors import (
    CANCELLED,
    INTERNAL,
    OUT_OF_MEMORY,
    TIMEOUT,
    ImpastoError,
)
from impasto.shared.options import DEFAULT_MAX_PIXELS, JobOptions
from impasto.shared.rawimage import RawImage

log = logging.getLogger("impasto.daemon.worker")

OOM_RETRIES = 2  # each retry shrinks the long edge to OOM_SHRINK of the last try
OOM_SHRINK = 0.7
MIN_OOM_SIZE = 64

# A running job saves its best image this often (seconds), from extra frames the worker
# asks the engine for (CHECKPOINT_FRAMES over the run) that clients never see.
CHECKPOINT_S = 3.0
CHECKPOINT_FRAMES = 20
# An estimate asked while the engine loads waits for it this long (VGG19 loads in a few
# seconds from a warm disk; a cold one or a big GPU runtime takes longer).
ESTIMATE_LOAD_WAIT_S = 60.0


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


def client_frames(frames: int, total: int) -> set[int]:
    """The iterations the engine would make frames on for ``frames`` (engine's rule)."""
    return {math.ceil(k * total / frames) for k in range(1, frames + 1)} if frames else set()


class Worker(threading.Thread):
    """Runs one task at a time on ``device``; ``report(kind, job_id, payload)`` goes to
    the loop and must be thread-safe (the server's queue plus a wake-up message)."""

    def __init__(
        self,
        device: str,
        report: Report,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        warmup: bool = True,
        weights_dir: Path | None = None,
    ):
        super().__init__(name=f"impasto-worker-{device}", daemon=True)
        self.device = device
        self.report = report
        self.max_pixels = max_pixels
        self.warmup = warmup
        self.weights_dir = weights_dir
        self.inbox: queue.Queue[Task | None] = queue.Queue()
        self.task: Task | None = None  # set by the backend, cleared when it reports the end
        self.engine: Any = None
        self.engine_error: ImpastoError | None = None
        self.model_loaded = False
        self.resolved_device = ""  # what "auto" turned out to be, once known
        self.loaded = threading.Event()  # load() has ended, well or not

    # -- thread ---------------------------------------------------------------------------
    def run(self) -> None:
        self.load()
        while True:
            task = self.inbox.get()
            if task is None:
                return
            self.run_task(task)

    def stop(self) -> None:
        self.inbox.put(None)

    # -- the public entries (this thread's loop; a Ray actor calls them without it) -------
    def run_task(self, task: Task) -> None:
        """Run ``task`` here and now; its reports end with DONE or FAILED, always."""
        try:
            self._run_task(task)
        except BaseException as exc:  # never let the thread die with a job half-done
            log.error("job %s: worker error\n%s", task.job_id, traceback.format_exc())
            why = f"worker error: {type(exc).__name__}: {exc}"
            self.report(FAILED, task.job_id, (INTERNAL, why))

    def load(self) -> None:
        """Load (and warm up) the engine; reports READY either way."""
        started = time.monotonic()
        try:
            from impasto.daemon.engine import Engine
            from impasto.daemon.engine.weightsource import WeightSource

            weights = WeightSource.for_daemon(self.weights_dir)
            self.engine = Engine(max_pixels=self.max_pixels, weights=weights)
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
        self.loaded.set()
        self.report(READY, None, {"device": self.device, "error": self.engine_error})

    def estimate(self, options: JobOptions, height: int, width: int, n_styles: int) -> dict:
        """What ``options`` on a ``width`` x ``height`` content would take on this worker
        (``Engine.preflight``: scales, tiles, peak memory, seconds at the speed of the
        engine's last job here); raises the job's own errors. Any thread may call it: it
        shares the engine's cached model and runs nothing."""
        if not self.loaded.wait(ESTIMATE_LOAD_WAIT_S):
            raise ImpastoError(
                f"the engine on {self.device} is still loading after "
                f"{ESTIMATE_LOAD_WAIT_S:g}s; try again in a moment",
                TIMEOUT,
            )
        if self.engine is None:
            raise self.engine_error or ImpastoError("the engine is not loaded", INTERNAL)
        info = self.engine.preflight(height, width, self._on_device(options), n_styles)
        return {**info, "device": self.resolved_device or self.device}

    def _on_device(self, options: JobOptions) -> JobOptions:
        """The options as this worker runs them: "auto" becomes its own device."""
        if options.device == "auto" and self.device != "auto":
            return options.replace(device=self.device)
        return options

    def _warm_up(self) -> None:
        """Load the model and measure this device's speed (``Engine.calibrate``), so the
        first real job starts at once and the first estimate is not a guess."""
        result = self.engine.calibrate(self.device)
        self.resolved_device = result.device_label
        self.model_loaded = True

    # -- one task -------------------------------------------------------------------------
    def _device_options(self, task: Task) -> JobOptions:
        if self.engine is None:
            raise self.engine_error or ImpastoError("the engine is not loaded", INTERNAL)
        return self._on_device(task.options)

    def _run_task(self, task: Task) -> None:
        if task.frames is not None:
            self._run_sequence(task)
            return
        options = self._device_options(task)
        total = options.total_iterations()
        shown = client_frames(options.frames, total)
        options = options.replace(frames=max(options.frames, CHECKPOINT_FRAMES), frame_size=None)
        init = task.init_image
        if task.start_iteration:  # resumed: carry on from the checkpoint
            options = options.replace(init="image", iterations=max(1, total - task.start_iteration))
        content = task.content.to_numpy()
        styles = [s.to_numpy() for s in task.styles]
        init_arr = init.to_numpy() if init is not None else None
        self.report(STARTED, task.job_id, None)
        progress = _ProgressRelay(self, task, shown, total)

        for attempt in range(OOM_RETRIES + 1):
            try:
                result = self.engine.run(
                    content,
                    styles,
                    options,
                    on_progress=progress,
                    cancel=task.cancel,
                    init_image=init_arr,
                )
                break
            except Exception as exc:
                if is_out_of_memory(exc) and attempt < OOM_RETRIES:
                    size = options.size or max(task.content.width, task.content.height)
                    smaller = int(size * OOM_SHRINK)
                    if smaller >= MIN_OOM_SIZE:
                        log.warning(
                            "job %s: out of memory at %dpx, retrying at %dpx",
                            task.job_id,
                            size,
                            smaller,
                        )
                        options = options.replace(size=smaller)
                        _free_device_memory()
                        continue
                self._failed(task, options, exc)
                return

        if result.image is None:
            self.report(FAILED, task.job_id, (CANCELLED, "cancelled before the first step"))
            return
        image = RawImage.from_numpy(result.image, task.content.depth)
        fields = {
            "job_id": task.job_id,
            "iterations": int(result.iterations) + task.start_iteration,
            "losses": _losses(result.losses),
            "cancelled": bool(result.cancelled),
            "elapsed": float(result.elapsed),
            "device": result.device_label or self.device,
        }
        self.resolved_device = self.resolved_device or fields["device"]
        self.model_loaded = True
        self.report(DONE, task.job_id, (fields, image))

    def _run_sequence(self, task: Task) -> None:
        """Every frame from ``task.start_frame`` on, each reported (FRAME) as it finishes.

        No OOM retry here: a smaller size would change the frames already sent.
        """
        from impasto.daemon.engine.sequence import stylise_sequence

        frames = task.frames
        assert frames is not None
        options = self._device_options(task).replace(frame_size=None)
        n_frames, start = len(frames), task.start_frame
        resume = None
        if start > 0 and task.previous is not None:
            resume = (start, frames[start - 1].to_numpy(), task.previous.to_numpy())
        relays: dict[int, _ProgressRelay] = {}

        def on_progress(index: int, p: Any) -> None:
            relay = relays.get(index)
            if relay is None:
                relays.clear()  # one frame at a time
                shown = client_frames(options.frames, int(p.total))
                relay = relays[index] = _ProgressRelay(
                    self, task, shown, int(p.total), frame=(index, n_frames)
                )
            relay(p)

        self.report(STARTED, task.job_id, None)
        started = time.monotonic()
        done, iterations, last = start, 0, None
        losses: dict[str, float] = {}
        device = ""
        contents = (frames[i].to_numpy() for i in range(start, n_frames))
        styles = [s.to_numpy() for s in task.styles]
        try:
            for item in stylise_sequence(
                self.engine,
                contents,
                styles,
                options,
                task.sequence,
                on_progress,
                task.cancel,
                resume=resume,
            ):
                result = item.result
                last = RawImage.from_numpy(result.image, task.frame_depth)
                losses = _losses(result.losses)
                fields = {
                    "job_id": task.job_id,
                    "index": item.index,
                    "n_frames": n_frames,
                    "iterations": int(result.iterations),
                    "losses": losses,
                    "elapsed": float(result.elapsed),
                    "warm": bool(item.warm),
                }
                self.report(FRAME, task.job_id, (fields, last))
                done, iterations = item.index + 1, iterations + int(result.iterations)
                device = result.device_label or device
        except Exception as exc:
            self._failed(task, options, exc)
            return
        fields = {
            "job_id": task.job_id,
            "iterations": iterations,
            "losses": losses,
            "cancelled": done < n_frames,
            "elapsed": time.monotonic() - started,
            "device": device or self.resolved_device or self.device,
            "frames": done,
        }
        self.model_loaded = True
        self.report(DONE, task.job_id, (fields, last))

    def _failed(self, task: Task, options: JobOptions, exc: Exception) -> None:
        if is_out_of_memory(exc):
            _free_device_memory()
            size = options.size or max(task.content.width, task.content.height)
            why = (
                f"out of memory on {self.device} even at {size}px; "
                "choose a smaller size or another device"
            )
            self.report(FAILED, task.job_id, (OUT_OF_MEMORY, why))
        elif isinstance(exc, ImpastoError):
            self.report(FAILED, task.job_id, (exc.code, str(exc)))
        else:
            log.error("job %s: engine error\n%s", task.job_id, traceback.format_exc())
            why = f"engine error: {type(exc).__name__}: {exc}"
            self.report(FAILED, task.job_id, (INTERNAL, why))


class _ProgressRelay:
    """The engine's progress callback: protocol fields for clients (frames only on the
    iterations they asked for) and a checkpoint of the image every CHECKPOINT_S."""

    def __init__(
        self,
        worker: Worker,
        task: Task,
        shown: set[int],
        total: int,
        frame: tuple[int, int] | None = None,
    ):
        self.worker, self.task, self.shown, self.total = worker, task, shown, total
        self.frame = frame  # a sequence's (frame index, n_frames): no checkpoints
        self.last_checkpoint = time.monotonic()

    def __call__(self, p: Any) -> None:
        task = self.task
        iteration = int(p.iteration) + task.start_iteration
        fields = {
            "job_id": task.job_id,
            "iteration": iteration,
            "total": self.total,
            "scale": int(p.scale),
            "n_scales": int(p.n_scales),
            "width": int(getattr(p, "width", 0) or 0),
            "height": int(getattr(p, "height", 0) or 0),
            "losses": _losses(p.losses),
            "elapsed": float(p.elapsed),
            "eta": None if p.eta is None else max(0.0, float(p.eta)),
        }
        if self.frame is not None:
            fields["frame"], fields["n_frames"] = self.frame
        image = getattr(p, "image", None)
        frame = None
        if image is not None:
            now = time.monotonic()
            if self.frame is None and now - self.last_checkpoint >= CHECKPOINT_S:
                self.last_checkpoint = now
                self.worker.report(
                    CHECKPOINT, task.job_id, (iteration, RawImage.from_numpy(image, 16))
                )
            if iteration in self.shown or iteration >= self.total:
                frame = RawImage.from_numpy(resize_frame(image, task.frame_size), task.frame_depth)
        if frame is None and image is not None and iteration % task.options.progress_every:
            return  # an extra frame on an iteration the client asked no report for
        self.worker.report(PROGRESS, task.job_id, (fields, frame))


class ThreadBackend:
    """Worker threads in this process, one per device (the default backend)."""

    runs_sequences = True

    def __init__(
        self,
        devices: list[str] | tuple[str, ...],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        warmup: bool = True,
        weights_dir: Path | None = None,
    ):
        self._args = (max_pixels, warmup, weights_dir)
        self.devices = list(devices)
        self.workers: list[Worker] = []

    def start(self, report: Report) -> None:
        max_pixels, warmup, weights_dir = self._args
        self.workers = [Worker(d, report, max_pixels, warmup, weights_dir) for d in self.devices]
        for worker in self.workers:
            worker.start()

    def free_slots(self) -> int:
        return sum(1 for w in self.workers if w.task is None and w.is_alive())

    def submit(self, task: Task) -> str:
        worker = next(w for w in self.workers if w.task is None and w.is_alive())
        worker.task = task
        worker.inbox.put(task)
        return worker.device

    def cancel(self, job_id: str) -> None:
        for worker in self.workers:
            if worker.task is not None and worker.task.job_id == job_id:
                worker.task.cancel.cancel()

    def finished(self, job_id: str) -> None:
        for worker in self.workers:
            if worker.task is not None and worker.task.job_id == job_id:
                worker.task = None

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers if w.is_alive())

    def stop(self) -> None:
        for worker in self.workers:
            if worker.task is not None:
                worker.task.cancel.cancel()
            worker.stop()

    def join(self, timeout: float) -> None:
        for worker in self.workers:
            worker.join(timeout=timeout)

    def estimate(self, options: JobOptions, height: int, width: int, n_styles: int) -> dict:
        """Engine.preflight on an idle worker's engine (else the first one's): its
        measured speed, its device's memory budget. Blocks: call it off the loop."""
        alive = [w for w in self.workers if w.is_alive()]
        if not alive:
            raise ImpastoError("no worker is running", INTERNAL)
        worker = next((w for w in alive if w.task is None), alive[0])
        return worker.estimate(options, height, width, n_styles)

    def info(self) -> dict[str, Any]:
        return {
            "devices": [w.resolved_device or w.device for w in self.workers],
            "model_loaded": any(w.model_loaded for w in self.workers),
            "engine_error": next(
                (str(w.engine_error) for w in self.workers if w.engine_error), None
            ),
        }


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
