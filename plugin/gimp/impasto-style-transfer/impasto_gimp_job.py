"""One run of the filter: read the region and styles, drive the job, insert the frames.

The job itself (options, submitting, events, frames, error advice) is the shared
``HostJob``; this module only maps it onto GIMP: pixels in, progress bar, layers out,
all inside one undo group.
"""

from __future__ import annotations

import impasto_gimp_args as args
import impasto_gimp_frames as frames
import impasto_gimp_layers as layers
import impasto_gimp_pixels as pixels
import impasto_gimp_watchdog as watchdog

from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    REFINED_SUFFIX,
    ContentSource,
    HostJob,
    Region,
    SequenceHostJob,
    options_from_settings,
    refinement_options,
    sequence_options_from_settings,
    styles_label,
)
from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.options import OptionsError

from gi.repository import Gimp  # isort: skip


def _content(drawable: Gimp.Drawable, region: Region, depth: int) -> ContentSource:
    """The region, read only once the job knows the size it works at."""
    _ok, dx, dy = drawable.get_offsets()

    def read(width: int, height: int):
        scale = width / region.width
        return pixels.read_region(
            drawable, region.x - dx, region.y - dy, region.width, region.height, depth, scale
        )

    return ContentSource(region.width, region.height, read)


def _preview(image: Gimp.Image, drawable: Gimp.Layer, region: Region, depth: int):
    """The picture of the preview to refine, over the region being stylised."""
    preview = layers.previous_preview(image, drawable)
    if preview is None:
        raise ImpastoError(
            f"there is no Impasto result on layer '{drawable.get_name()}' to refine: run a "
            "quick preview (a small output size) first, then refine it",
            BAD_OPTIONS,
        )
    _ok, px, py = preview.get_offsets()
    return pixels.read_region(
        preview, region.x - px, region.y - py, region.width, region.height, depth
    )


def _run_job(job: HostJob) -> None:
    """Pump the job with GIMP's progress bar until it ends."""
    Gimp.progress_init(f"Impasto: {job.style_name}")
    guard = None

    def update(job: HostJob) -> None:
        nonlocal guard
        if guard is None and job.job_id:
            # GIMP's Cancel kills this process; the watchdog then cancels the daemon's job.
            guard = watchdog.start(job.client.endpoint, job.job_id)
        Gimp.progress_set_text(job.status_text)
        Gimp.progress_update(job.fraction)

    try:
        job.run_blocking(on_update=update)
    except ImpastoError:
        assert job.error is not None and job.error_text is not None  # what run_blocking raises
        raise ImpastoError(job.error_text, job.error.code) from None
    finally:
        watchdog.stop(guard)
        Gimp.progress_update(1.0)
        Gimp.progress_end()
    if not job.frames:
        raise ImpastoError("the daemon sent no image back", BAD_IMAGE)


def estimate_request(image: Gimp.Image, drawable: Gimp.Drawable, config: Gimp.ProcedureConfig):
    """What the dialog's estimate line asks about: (endpoint, width, height, options or
    the ImpastoError the settings make, number of styles, frames, sequence options or
    None for a still), for ``EstimateWatch.request``. All frames: the whole canvas per
    frame layer (holds, sent once, still counted: finding one means reading them all)."""
    endpoint = config.get_property("endpoint") or None
    n_styles = max(1, len(args.style_paths(config)))
    try:
        options = options_from_settings(args.settings_from_config(config))
        if config.get_property("all-frames"):
            n_frames = len(frames.frame_layers(image))
            sequence = sequence_options_from_settings(args.sequence_settings_from_config(config))
            return (
                endpoint,
                image.get_width(),
                image.get_height(),
                options,
                n_styles,
                n_frames,
                sequence,
            )
        region = layers.selection_region(image, drawable)
        if region is None:
            raise ImpastoError("the selection does not touch the layer", BAD_OPTIONS)
        if config.get_property("refine-preview"):
            options = refinement_options(options)
    except ImpastoError as exc:
        return endpoint, 0, 0, exc, n_styles, 1, None
    return endpoint, region.width, region.height, options, n_styles, 1, None


def _prepare(config: Gimp.ProcedureConfig):
    """Style files, their pixels, the options and a client, checked before anything runs."""
    style_files = args.style_paths(config)
    if not style_files:
        raise ImpastoError("choose a style image (argument 'style-file')", BAD_OPTIONS)
    options = options_from_settings(args.settings_from_config(config))
    styles = [pixels.read_file(path) for path in style_files]
    try:  # a wrong number of blend weights fails here, before anything is sent
        options.blend_weights(len(styles))
    except OptionsError as exc:
        raise ImpastoError(str(exc), BAD_OPTIONS) from None
    endpoint = config.get_property("endpoint") or None
    client = Client(endpoint, timeout=config.get_property("timeout"), name="impasto-gimp")
    return style_files, styles, options, client


def stylise(image: Gimp.Image, drawable: Gimp.Layer, config: Gimp.ProcedureConfig) -> list:
    """Run the filter on one layer; returns the inserted layers (group first)."""
    style_files, styles, options, client = _prepare(config)

    image.undo_group_start()
    saved = layers.feathered_selection(image, config.get_property("feather"))
    try:
        region = layers.selection_region(image, drawable)
        if region is None:
            raise ImpastoError("the selection does not touch the layer", BAD_OPTIONS)
        depth = pixels.image_depth(image)
        content = _content(drawable, region, depth)
        label, init = styles_label(style_files), None
        if config.get_property("refine-preview"):
            options, init = refinement_options(options), _preview(image, drawable, region, depth)
            label += REFINED_SUFFIX
        job = HostJob(client, content, styles, options, style_name=label, init_image=init)
        _run_job(job)
        inserted = layers.insert_frames(
            image,
            drawable,
            job.frames,
            region,
            job.style_name,
            job.total,
            config.get_property("placement"),
            config.get_property("frame-delay"),
        )
    finally:
        layers.restore_selection(image, saved)
        image.undo_group_end()
        client.close()
    Gimp.displays_flush()
    return inserted


def stylise_frames(image: Gimp.Image, config: Gimp.ProcedureConfig) -> list:
    """Stylise every frame of an animation image (its top-level layers) as one sequence
    job; returns the inserted layers (group first). Frames finished before a cancel or
    an error stay in the image."""
    style_files, styles, options, client = _prepare(config)
    sources = frames.frame_layers(image)
    pictures = frames.FramePictures(image, sources, pixels.image_depth(image))
    label = styles_label(style_files)
    writer = frames.FrameWriter(image, label)
    image.undo_group_start()
    try:
        job = SequenceHostJob(
            client,
            [(layer, pictures.source(i)) for i, layer in enumerate(sources)],
            styles,
            options,
            sequence_options_from_settings(args.sequence_settings_from_config(config)),
            on_frame=writer,
            style_name=label,
        )
        _run_job(job)
    finally:
        image.undo_group_end()
        pictures.close()
        client.close()
    Gimp.displays_flush()
    return [writer.group, *writer.layers]
