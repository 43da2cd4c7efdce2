"""The host-independent job driver (plugin/hostjob.py) both editor plug-ins use.

Settings and names are checked directly; jobs run against the real daemon fixture
(a daemon process on a free loopback port, the real VGG19 at 64 px).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from PIL import Image

from impasto.plugin import daemonctl
from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    CONNECTED,
    DEFAULT_SETTINGS,
    NO_DAEMON_TEXT,
    UNREACHABLE,
    ContentSource,
    EstimateWatch,
    HostJob,
    ask_estimate,
    describe_error,
    estimate_error_text,
    estimate_text,
    format_eta,
    frame_layer_name,
    group_layer_name,
    insert_index,
    is_final_name,
    is_result_name,
    newest_result,
    options_from_settings,
    probe_daemon,
    refinement_options,
    sequence_seconds,
    style_display_name,
    styles_label,
    unique_name,
    work_size,
)
from impasto.shared import errors, paths
from impasto.shared.errors import ImpastoError
from impasto.shared.imagefile import load_image
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import SequenceOptions
from tests.daemon_fixture import free_port


# -- settings ---------------------------------------------------------------------------
def test_settings_use_cli_names_and_plugin_defaults():
    opts = options_from_settings({"size": 64, "iterations": 6, "frames": 3, "strength": "strong"})
    assert (opts.size, opts.iterations, opts.frames, opts.strength) == (64, 6, 4, "strong")
    defaults = options_from_settings({})
    assert defaults.size is None  # the plug-ins keep the layer's size unless capped


def test_stroke_scale_is_a_setting_with_a_default_and_a_clear_error():
    assert DEFAULT_SETTINGS["stroke_scale"] == "auto"
    assert options_from_settings({}).stroke_scale == "auto"
    assert options_from_settings({"stroke-scale": "large"}).stroke_scale == "large"
    with pytest.raises(ImpastoError) as info:
        options_from_settings({"stroke_scale": "huge"})
    assert "stroke_scale" in info.value.message and info.value.code == errors.BAD_OPTIONS


def test_frames_count_progress_layers_besides_the_final():
    # the engine counts the final image among its frames: one more than the dialog's
    assert options_from_settings({"frames": 3}).frames == 4
    assert options_from_settings({}).frames == DEFAULT_SETTINGS["frames"] + 1
    assert options_from_settings({"frames": 0}).frames == 0
    assert options_from_settings({"frames": "2"}).frames == 3
    assert options_from_settings({"frames": 999}).frames == 1000


def test_settings_stored_as_strings_are_coerced():
    opts = options_from_settings(
        {
            "size": "128",
            "iterations": "",
            "style-weight": "2.5",
            "style_blend": "0.7, 0.3",
            "seed": "none",
            "preset": "draft",
            "placement": "animation",  # host-only: passed over
            "endpoint": "tcp://127.0.0.1:1",
        }
    )
    assert opts.size == 128 and opts.iterations is None and opts.style_weight == 2.5
    assert opts.style_blend == [0.7, 0.3] and opts.seed is None and opts.quality == "draft"
    assert options_from_settings({"size": "original"}).size is None
    assert options_from_settings({"size": 0}).size is None


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"sizee": 64}, "sizee"),
        ({"iterations": "many"}, "iterations"),
        ({"strength": "brutal"}, "strength"),
        ({"frames": -1}, "frames"),
        ({"content_weight": "nan"}, "content_weight"),
    ],
)
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(ImpastoError) as info:
        options_from_settings(settings)
    assert info.value.code == errors.BAD_OPTIONS
    assert f"'{field}'" in info.value.message


def test_layer_names():
    assert style_display_name("/x/starry_night.jpg") == "starry_night"
    assert style_display_name("Layer 3") == "Layer 3"
    assert styles_label(["/x/starry_night.jpg", "wave.png"]) == "starry_night + wave"
    assert group_layer_name(["starry_night", "wave"]) == "Impasto – starry_night + wave"
    assert frame_layer_name("starry", 2, 6) == "starry – iteration 2/6"
    assert frame_layer_name("starry", 6, 6, final=True) == "starry – final (6 iterations)"
    assert frame_layer_name("starry", 2, 6, delay_ms=120) == "starry – iteration 2/6 (120 ms)"


def test_results_are_recognised_and_named_uniquely():
    made = [
        "Impasto – starry_night",
        "Impasto – starry_night #2",
        "starry – iteration 2/6",
        "starry – final (6 iterations)",
        "starry – cancelled at 3/400",
        "starry – iteration 2/6 (200 ms)",
        "starry – final (6 iterations) (150 ms) #2",
    ]
    assert all(is_result_name(n) for n in made), [n for n in made if not is_result_name(n)]
    for name in ("Background", "Layer 2", "iteration 2", "sketch – final"):
        assert not is_result_name(name)
    assert unique_name("Impasto – s", ["Background"]) == "Impasto – s"
    assert unique_name("Impasto – s", ["Impasto – s"]) == "Impasto – s #2"
    assert unique_name("Impasto – s", ["Impasto – s", "Impasto – s #2"]) == "Impasto – s #3"


def test_a_new_result_goes_above_the_earlier_ones_but_below_other_layers():
    stack = ["Paper", "Background", "Impasto – a", "Impasto – a #2", "Line art"]
    assert insert_index(stack, 1) == 3  # above both earlier runs, below the line art
    assert insert_index(["Background"], 0) == 0
    assert insert_index(["Background", "Line art", "Impasto – a"], 0) == 0


def test_work_size_caps_never_enlarges_and_checks_the_daemons_limit():
    assert work_size(400, 200, 100, 10**6) == (100, 50)
    assert work_size(40, 20, 100, 10**6) == (40, 20)
    assert work_size(400, 200, None, 10**6) == (400, 200)
    with pytest.raises(ImpastoError) as info:
        work_size(4200, 4100, None, 4096 * 4096)
    assert info.value.code == errors.IMAGE_TOO_LARGE
    assert "4200x4100" in info.value.message and "over the limit" in info.value.message
    assert work_size(4200, 4100, 1024, 4096 * 4096) == (1024, 1000)


def test_errors_come_with_advice():
    text = describe_error(errors.DAEMON_UNAVAILABLE, "no daemon at tcp://127.0.0.1:1")
    assert text.startswith("no daemon at") and "impasto daemon start" in text
    assert "smaller output size" in describe_error(errors.IMAGE_TOO_LARGE, "too big")
    assert "update both" in describe_error(errors.VERSION_MISMATCH, "v1 vs v2")
    assert describe_error(errors.BAD_IMAGE, "broken") == "broken"
    assert (format_eta(5), format_eta(125.4), format_eta(3725), format_eta(None)) == (
        "0:05",
        "2:05",
        "1:02:05",
        "?",
    )


# -- jobs against the real daemon -----------------------------------------------------------
@pytest.fixture(scope="module")
def images(images_dir):
    content = load_image(images_dir / "tubingen.jpg")
    style = load_image(images_dir / "starry_night.jpg")
    return content, style


def test_job_streams_frames_and_ends_with_the_final_image(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 6, "frames": 3, "seed": 1})
    job = HostJob(Client(daemon.endpoint), content, [style], opts, style_name="starry_night")
    seen = []
    job.start()
    assert job.running and job.job_id
    deadline = time.monotonic() + 120
    while job.pump(0.05):  # what a GUI timer does
        seen.append((job.fraction, job.status_text))
        assert time.monotonic() < deadline, job.status_text
    assert job.error is None, job.error_text
    assert job.done and not job.cancelled and job.fraction == 1.0
    assert any("Iteration" in text for _, text in seen), seen[-3:]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    labels = [f.label for f in job.frames]
    assert len(job.frames) == 4, labels  # 3 progress frames + the final
    assert job.frames[-1].final and labels[-1] == "starry_night – final (6 iterations)"
    assert all(not f.final for f in job.frames[:-1])
    iterations = [f.iteration for f in job.frames]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 6
    datas = [f.image.data for f in job.frames]
    assert len(set(datas)) == 4  # frames differ from each other
    assert max(job.frames[-1].image.width, job.frames[-1].image.height) == 64
    assert job.status_text.startswith("Done: 6 iterations")


def test_cancel_keeps_the_frames_so_far(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 400, "frames": 200})
    job = HostJob(Client(daemon.endpoint), content, [style], opts, style_name="s")
    job.start()
    deadline = time.monotonic() + 120
    while job.pump(0.05) and len(job.frames) < 2:
        assert time.monotonic() < deadline
    job.cancel()
    assert job.run_blocking(timeout=60) is job.frames
    assert job.cancelled and job.error is None
    assert len(job.frames) >= 2 and job.frames[-1].iteration < 400
    assert job.status_text.startswith("Cancelled")


def test_unreachable_daemon_is_a_readable_error_not_a_hang(images):
    content, style = images
    client = Client("tcp://127.0.0.1:9", timeout=30)  # nothing listens on the discard port
    job = HostJob(client, content, [style], options_from_settings({"size": 64}), autostart=False)
    started = time.monotonic()
    assert job.pump() is False
    assert time.monotonic() - started < 3
    assert job.error is not None and job.error.code == errors.DAEMON_UNAVAILABLE
    assert job.error_text is not None and "impasto daemon start" in job.error_text
    with pytest.raises(ImpastoError):
        job.run_blocking()


def test_daemon_side_rejections_end_the_job(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 2, "style_layers": "conv9_9"})
    job = HostJob(Client(daemon.endpoint), content, [style], opts)
    with pytest.raises(ImpastoError) as info:
        job.run_blocking(timeout=60)
    assert job.error is info.value and job.done and not job.frames
    assert "conv9_9" in info.value.message


def test_content_is_read_at_the_size_the_job_works_at(daemon, images):
    content, style = images
    asked = []

    def read(width, height):
        asked.append((width, height))
        return content  # any image: the daemon scales it to the options' size

    source = ContentSource(content.width * 4, content.height * 4, read)
    opts = options_from_settings({"size": 64, "iterations": 2, "frames": 0})
    job = HostJob(Client(daemon.endpoint), source, [style], opts)
    job.run_blocking(timeout=60)
    long_edge = max(asked[0])
    assert asked and long_edge == 64, asked
    assert job.options.size == 64  # a preview of the layer, which refinement can enlarge
    assert job.can_refine
    assert [f.final for f in job.frames] == [True]


def test_no_daemon_on_a_local_endpoint_starts_one(images, tmp_path):
    content, style = images
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert probe_daemon(endpoint)[0] == UNREACHABLE
    job = HostJob(
        Client(endpoint, timeout=30),
        content,
        [style],
        options_from_settings({"size": 64, "iterations": 3, "frames": 1}),
    )
    texts = []
    try:
        job.run_blocking(timeout=180, on_update=lambda j: texts.append(j.status_text))
        assert job.daemon_started and job.connection == CONNECTED
        assert texts[0] == "Starting the daemon… loading the model", texts[:3]
        assert job.status_text.startswith("Done: 3 iterations"), job.status_text
        assert [f.final for f in job.frames] == [False, True]
        assert probe_daemon(endpoint)[0] == CONNECTED
    finally:
        daemonctl.stop(endpoint)


def test_a_remote_endpoint_is_never_started(images):
    content, style = images
    endpoint = "tcp://192.0.2.1:5755"  # TEST-NET-1: not this machine, never answers
    job = HostJob(Client(endpoint, timeout=1.0), content, [style], options_from_settings({}))
    with pytest.raises(ImpastoError) as info:
        job.run_blocking(timeout=30)
    assert info.value.code == errors.DAEMON_UNAVAILABLE
    assert not job.daemon_started and job.connection == UNREACHABLE


def test_the_recorded_command_starts_the_daemon_from_an_editors_python(tmp_path, monkeypatch):
    path = daemonctl.record_daemon_command("/usr/bin/python3")
    assert path.parent == paths.config_dir()
    assert daemonctl.recorded_command() == ["/usr/bin/python3", "-m", "impasto.daemon"]
    monkeypatch.setattr(daemonctl.sys, "executable", "/usr/bin/krita")  # Krita's own binary
    command = daemonctl.daemon_command("tcp://127.0.0.1:5755")
    assert command == [
        "/usr/bin/python3",
        "-m",
        "impasto.daemon",
        "--endpoint",
        "tcp://127.0.0.1:5755",
    ]


def test_install_plugin_records_how_to_start_a_daemon(tmp_path):
    from impasto.cli.main import main

    main(["install-plugin", "krita", "--dest", str(tmp_path / "pykrita")])
    recorded = daemonctl.recorded_command()
    assert recorded == [sys.executable, "-m", "impasto.daemon"]


def _finished(job: HostJob) -> HostJob:
    job.run_blocking(timeout=120)
    assert job.error is None, job.error_text
    return job


def _rgb(image: RawImage, size: tuple[int, int] | None = None) -> np.ndarray:
    pil = image.to_pil().convert("RGB")
    if size is not None and pil.size != size:
        pil = pil.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(pil).astype(np.int16)


@pytest.fixture(scope="module")
def layer(images):
    """A 96x72 layer: small enough for a quick refine."""
    return RawImage.from_numpy(np.asarray(images[0].to_pil().convert("RGB").resize((96, 72))))


def test_a_preview_is_refined_at_the_layer_size_from_its_own_picture(daemon, images, layer):
    style = images[1]
    settings = {"size": 48, "iterations": 8, "frames": 0, "seed": 1, "strength": "strong"}
    preview = HostJob(Client(daemon.endpoint), layer, [style], options_from_settings(settings))
    assert not preview.can_refine  # nothing to refine before it has run
    _finished(preview)
    assert preview.can_refine and preview.frames[-1].image.width == 48

    refine = _finished(preview.refinement(Client(daemon.endpoint), iterations=2))
    assert refine.options.size is None and refine.options.init == "image"
    assert refine.options.stroke_scale == "fine"  # the layout is already there
    assert not refine.can_refine  # it is at the layer's size already
    assert refine.frames[-1].label == "style (refined) – final (2 iterations)"
    final = refine.frames[-1].image
    assert (final.width, final.height) == (96, 72)

    # the same two iterations started from the layer itself, for comparison
    plain_opts = options_from_settings({**settings, "size": None, "iterations": 2})
    plain = _finished(HostJob(Client(daemon.endpoint), layer, [style], plain_opts))
    upscaled = _rgb(preview.frames[-1].image, (96, 72))
    from_preview = np.abs(_rgb(final) - upscaled).mean()
    from_content = np.abs(_rgb(plain.frames[-1].image) - upscaled).mean()
    assert from_preview < 0.5 * from_content, (from_preview, from_content)


def test_a_run_at_the_layer_size_is_no_preview_to_refine(daemon, images, layer):
    opts = options_from_settings({"size": 512, "iterations": 1, "frames": 0})
    job = _finished(HostJob(Client(daemon.endpoint), layer, [images[1]], opts))
    assert job.options.size is None and not job.can_refine  # never enlarged: layer size
    with pytest.raises(ImpastoError) as info:
        job.refinement(Client(daemon.endpoint))
    assert "no finished preview" in info.value.message


def test_the_preview_to_refine_is_the_newest_result_on_the_source():
    stack = ["Paper", "Background", "Impasto – wave", "Impasto – wave #2", "Line art"]
    assert newest_result(stack, 1) == 3
    assert newest_result(["Background", "Line art"], 0) is None
    assert is_final_name("wave – final (40 iterations)")
    assert is_final_name("wave (refined) – final (4 iterations) (200 ms) #2")
    assert not is_final_name("wave – iteration 3/40") and not is_final_name("Impasto – wave")
    opts = refinement_options(options_from_settings({"size": 128, "iterations": 40}))
    assert (opts.size, opts.init, opts.stroke_scale, opts.iterations) == (None, "image", "fine", 20)


# -- the estimate line before a run --------------------------------------------------------
def test_estimate_lines_say_time_size_and_memory_or_why_not():
    info = {
        "width": 1024,
        "height": 768,
        "scales": [{"tile": None}, {"tile": 512}],
        "memory_estimate": 1.4 * 2**30,
        "memory_budget": 3 * 2**30,
        "seconds": 130.0,
        "speed_measured": True,
    }
    assert estimate_text(info) == "About 2:10 · 1024×768 px · peak 1.4 GB of 3.0 GB · in tiles"
    first = estimate_text({**info, "speed_measured": False, "scales": []})
    assert first.startswith("About 2:10 (first run: rough estimate) · ")
    refusal = ImpastoError(
        "a 5000x4000 picture needs more memory than this CPU's budget of 3.0 GB allows; ask "
        "for 3520 px or less on the long edge, or raise the budget",
        errors.TOO_LARGE_FOR_DEVICE,
    )
    assert estimate_error_text(refusal) == "Too large for this machine: ask for 3520 px or less"


def test_the_estimate_watch_asks_the_daemon_once_the_settings_settle(daemon):
    """Requests in a burst (a size being typed) cost one estimate, of the last settings;
    the line is the daemon's plan, and a refusal or bad settings show at once."""
    asked = []

    def ask(*wanted):
        asked.append(wanted)
        return ask_estimate(*wanted)

    watch = EstimateWatch(delay=0.2, ask=ask)
    for size in (16, 32, 48):
        watch.request(daemon.endpoint, 640, 480, options_from_settings({"size": size}))
    assert watch.text == "Estimating…"
    deadline = time.monotonic() + 60
    while watch.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [w[3].size for w in asked] == [48]
    assert watch.text.startswith("About ") and "48×36 px" in watch.text, watch.text

    watch.request(daemon.endpoint, 640, 480, options_from_settings({"size": 48}))
    assert not watch.busy and "48×36 px" in watch.text  # the same settings: no new request
    try:
        options_from_settings({"iterations": "many"})
    except ImpastoError as exc:
        watch.request(daemon.endpoint, 640, 480, exc)
    assert watch.text.startswith("No estimate: option 'iterations'")


def test_an_animation_estimate_is_the_first_frame_plus_warm_frames_at_output_size():
    """First frame as the still (coarse-to-fine here), then each later frame
    warm_budget(first's iterations) at the output size, at the still's pace."""
    info = {
        "width": 200,
        "height": 100,
        # 50x25x40 + 200x100x60 = 50,000 + 1,200,000 pixel-iterations in 125 s
        "scales": [
            {"width": 50, "height": 25, "iterations": 40, "tile": None},
            {"width": 200, "height": 100, "iterations": 60, "tile": None},
        ],
        "seconds": 125.0,
        "speed_measured": True,
    }
    pace = 125.0 / 1_250_000
    sequence = SequenceOptions()  # warm frames: half the first frame's 100 iterations
    warm = 200 * 100 * sequence.warm_budget(100) * pace
    assert sequence.warm_budget(100) == 50
    assert sequence_seconds(info, 4, sequence) == pytest.approx(125.0 + 3 * warm)  # 425 s
    assert sequence_seconds(info, 1, sequence) == 125.0
    assert sequence_seconds(info, 3, SequenceOptions(warm_iterations=10)) == pytest.approx(
        125.0 + 2 * 200 * 100 * 10 * pace
    )
    assert sequence_seconds(info, 3, SequenceOptions(independent=True)) == 375.0
    assert estimate_text(info, 4, sequence) == "4 frames · about 7:05 · 200×100 px"
    assert estimate_text(info, 1, sequence).startswith("About 2:05")
    rough = estimate_text({**info, "speed_measured": False}, 2, sequence)
    assert rough.startswith("2 frames · about 3:45 (first run: rough estimate)"), rough


def test_the_estimate_watch_asks_again_after_no_daemon_but_never_spins(daemon):
    """ "No daemon" is not kept: the same settings later (the daemon connecting, a retry)
    ask again, one request per trigger; a real answer is kept unless asked fresh."""
    asked = []

    def ask(*wanted):
        asked.append(wanted[0])
        return ask_estimate(*wanted)

    def settle():
        deadline = time.monotonic() + 60
        while watch.busy and time.monotonic() < deadline:
            time.sleep(0.02)

    dead = f"tcp://127.0.0.1:{free_port()}"
    options = options_from_settings({"size": 48})
    watch = EstimateWatch(delay=0.05, ask=ask)
    watch.request(dead, 640, 480, options)
    settle()
    assert watch.text == NO_DAEMON_TEXT and watch.waiting_for_daemon
    time.sleep(0.3)
    assert asked == [dead]  # no loop of requests against the dead endpoint
    watch.request(dead, 640, 480, options)  # a trigger with unchanged settings
    settle()
    assert asked == [dead, dead] and watch.text == NO_DAEMON_TEXT
    watch.retry(after=60.0)  # too soon
    assert not watch.busy and asked == [dead, dead]
    watch.retry(after=0.0)
    settle()
    assert asked == [dead, dead, dead]

    watch.request(daemon.endpoint, 640, 480, options)
    settle()
    assert watch.text.startswith("About ") and not watch.waiting_for_daemon, watch.text
    watch.retry(after=0.0)  # a real answer: nothing to retry
    watch.request(daemon.endpoint, 640, 480, options)  # kept
    assert not watch.busy and asked == [dead, dead, dead, daemon.endpoint]
    watch.request(daemon.endpoint, 640, 480, options, fresh=True)  # after a run
    assert watch.text == "Estimating…"
    settle()
    assert asked == [dead, dead, dead, daemon.endpoint, daemon.endpoint]
    assert watch.text.startswith("About "), watch.text

    sequence = SequenceOptions()
    watch.request(daemon.endpoint, 640, 480, options, 1, 3, sequence)
    settle()
    assert watch.text.startswith("3 frames · about "), watch.text
    assert "48×36 px" in watch.text
