"""The Krita plug-in inside a real headless Krita (xvfb-run), against a real daemon.

Each test starts Krita with a throwaway HOME holding the installed plug-in, opens a
small PNG, runs the plug-in (scripting entry or dialog), saves a .kra and quits. The
assertions read the .kra itself (tests/krita_kra.py) besides the facts and raw pixel
dumps the in-Krita scenario (tests/krita_selftest.py) wrote.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto.plugin import daemonctl
from tests.daemon_fixture import free_port
from tests.krita_harness import INSTALL_HINT, KritaHome, missing_tools, pixels, write_png
from tests.krita_kra import read_kra

pytestmark = [pytest.mark.krita, pytest.mark.slow]

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "krita_dialog.png"
GROUP = "Impasto – starry_night"
FRAMES = [  # frames = 3: three progress layers besides the final
    "starry_night – iteration 2/6",
    "starry_night – iteration 3/6",
    "starry_night – iteration 5/6",
    "starry_night – final (6 iterations)",
]


@pytest.fixture(scope="module")
def krita_home(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: {INSTALL_HINT}")
    return KritaHome(tmp_path_factory.mktemp("krita-home"))


@pytest.fixture(scope="module")
def source_png(tmp_path_factory, tubingen):
    return write_png(tubingen, tmp_path_factory.mktemp("png") / "tubingen.png", 96)


def _spec(source_png, starry_night, daemon, tmp_path, **extra):
    endpoint = daemon.endpoint if daemon is not None else None
    options = {"size": 64, "iterations": 6, "frames": 3, "seed": 3, "endpoint": endpoint}
    options.update(extra.pop("options", {}))
    return {
        "open": str(source_png),
        "styles": [str(starry_night)],
        "options": options,
        "save": str(tmp_path / "out" / "result.kra"),
        **extra,
    }


def _run(krita_home, spec, tmp_path):
    facts = krita_home.run(spec, tmp_path / "out")
    assert facts["ok"], facts.get("traceback")
    assert "error" not in facts, facts["error"]
    return facts


def _bgra_to_rgba(a: np.ndarray) -> np.ndarray:
    return a[..., [2, 1, 0, 3]]


def test_frames_land_in_a_group_above_the_source(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    facts = _run(krita_home, _spec(source_png, starry_night, daemon, tmp_path), tmp_path)
    assert facts["created"] == [GROUP, *FRAMES]
    assert facts["saved"]

    kra = read_kra(tmp_path / "out" / "result.kra")
    top = kra.root.children  # bottom-up
    assert [(n.name, n.nodetype) for n in top] == [
        ("Background", "paintlayer"),
        (GROUP, "grouplayer"),
    ]
    group = top[1]
    assert [n.name for n in group.children] == FRAMES  # final on top
    assert all(n.nodetype == "paintlayer" and not n.masks for n in group.children)
    assert [n.visible for n in group.children] == [False, False, False, True]
    assert facts["progress_updates"] >= 3  # the scripting entry's callback
    assert facts["progress_texts"][-1].startswith("Done: 6 iterations")
    assert facts["status_bar"].startswith("Impasto: Done: 6 iterations")

    src = np.asarray(Image.open(source_png).convert("RGBA"))
    assert np.array_equal(_bgra_to_rgba(kra.pixels(top[0])), src)  # source untouched
    frames = [_bgra_to_rgba(kra.pixels(n)) for n in group.children]
    for i, frame in enumerate(frames):
        assert frame.shape == src.shape
        assert np.array_equal(frame[..., 3], src[..., 3])  # the layer's alpha is kept
        diff = np.abs(frame[..., :3].astype(int) - src[..., :3]).mean()
        assert diff > 2.0, f"frame {i} hardly differs from the source ({diff:.2f})"
        for other in frames[i + 1 :]:
            assert np.abs(frame.astype(int) - other).mean() > 0.5
    merged = kra.merged()
    assert np.array_equal(merged, frames[-1])  # the final frame is what the artist sees
    # the in-Krita facts agree with the file
    assert np.array_equal(
        _bgra_to_rgba(pixels(tmp_path / "out", facts["after_file"], facts)), merged
    )


def test_selection_confines_the_result(krita_home, source_png, starry_night, daemon, tmp_path):
    spec = _spec(source_png, starry_night, daemon, tmp_path, selection=[30, 20, 40, 30], feather=3)
    facts = _run(krita_home, spec, tmp_path)
    assert facts["created"] == [GROUP, *FRAMES]
    x, y, w, h = facts["selection_bounds"]
    assert x < 30 and y < 20 and w > 40 and h > 30  # feathering widened the selection

    out = tmp_path / "out"
    before = pixels(out, facts["before_file"], facts)
    after = pixels(out, facts["after_file"], facts)
    coverage = pixels(out, facts["selection_file"], facts, channels=1)[..., 0]
    outside = coverage == 0
    assert np.array_equal(after[outside], before[outside])  # untouched outside
    full = coverage == 255
    assert np.abs(after[full].astype(int) - before[full]).mean() > 2.0
    partial = (coverage > 0) & (coverage < 255)
    assert partial.any()  # the feathered rim blends source and result
    assert np.array_equal(
        pixels(out, facts["source_layer_after"], facts),
        pixels(out, facts["source_layer_before"], facts),
    )

    kra = read_kra(out / "result.kra")
    group = kra.find(GROUP)
    assert [n.name for n in group.children] == FRAMES
    for node in group.children:
        assert [m.nodetype for m in node.masks] == ["transparencymask"]
        layer = kra.pixels(node)
        rows, cols = np.nonzero(layer[..., 3])
        assert rows.min() >= y and cols.min() >= x  # frames hold the selection box only
        assert rows.max() < y + h and cols.max() < x + w
    merged = kra.merged()
    src = np.asarray(Image.open(source_png).convert("RGBA"))
    assert np.array_equal(merged[outside], src[outside])
    assert not np.array_equal(merged[full], src[full])


def test_16_bit_layer_with_offset_on_a_larger_canvas(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, depth="U16", canvas=[130, 100])
    spec["offset"] = [20, 12]
    facts = _run(krita_home, spec, tmp_path)
    assert facts["color"] == ["RGBA", "U16"]
    assert facts["created"] == [GROUP, *FRAMES]
    source = next(n for n in facts["tree"] if n["name"] == "Background")
    assert source["bounds"] == [20, 12, 96, 72]
    for name in FRAMES:
        layer = next(n for n in facts["tree"] if n["name"] == name)
        assert layer["bit_depth"] == "U16" and layer["bounds"] == source["bounds"]

    out = tmp_path / "out"
    src = pixels(out, facts["source_layer_after"], facts)
    assert np.array_equal(src, pixels(out, facts["source_layer_before"], facts))
    shots = [pixels(out, facts["layer_files"][name], facts) for name in FRAMES]
    inside = (slice(12, 84), slice(20, 116))
    for i, shot in enumerate(shots):
        assert shot.dtype == np.uint16
        assert not shot[..., 3][src[..., 3] == 0].any()  # nothing outside the layer
        assert np.array_equal(shot[inside][..., 3], src[inside][..., 3])
        assert np.abs(shot[inside][..., :3].astype(int) - src[inside][..., :3]).mean() > 500
        for other in shots[i + 1 :]:
            assert np.abs(shot.astype(int) - other).mean() > 100
    low_bytes = shots[-1][inside][..., :3] & 0xFF
    assert len(np.unique(low_bytes)) > 16  # real 16-bit results, not 8 bit widened

    kra = read_kra(out / "result.kra")
    assert kra.colorspace == "RGBA16"  # Krita's id for 16-bit integer RGBA
    group = kra.find(GROUP)
    assert [n.name for n in group.children] == FRAMES
    final = kra.pixels(group.children[-1]).view("<u2").reshape(shots[-1].shape)
    assert np.array_equal(final, shots[-1])  # what Krita saved is what it showed


def test_selection_baked_into_alpha_with_a_layer_as_second_style(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(
        source_png,
        starry_night,
        daemon,
        tmp_path,
        selection=[10, 10, 50, 40],
        feather=4,
        options={"confine": "alpha", "frames": 0, "iterations": 3, "style_blend": [0.8, 0.2]},
    )
    spec["styles"].append("layer:Background")  # any layer of an open document is a style
    facts = _run(krita_home, spec, tmp_path)
    final = "starry_night + Background – final (3 iterations)"
    assert facts["created"] == ["Impasto – starry_night + Background", final]
    assert "masks" not in facts
    out = tmp_path / "out"
    coverage = pixels(out, facts["selection_file"], facts, channels=1)[..., 0].astype(int)
    layer = pixels(out, facts["layer_files"][final], facts).astype(int)
    src = pixels(out, facts["source_layer_before"], facts).astype(int)
    expected = src[..., 3] * coverage / 255  # the source is opaque where covered
    assert np.abs(layer[..., 3] - expected).max() <= 2
    before = pixels(out, facts["before_file"], facts)
    after = pixels(out, facts["after_file"], facts)
    assert np.array_equal(after[coverage == 0], before[coverage == 0])
    assert np.abs(after[coverage == 255].astype(int) - before[coverage == 255]).mean() > 2.0


def test_dialog_runs_pumps_cancels_and_remembers(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(
        source_png,
        starry_night,
        daemon,
        tmp_path,
        via="dialog",
        options={"iterations": 400, "frames": 100},
        cancel_after_frames=2,
        screenshot=str(tmp_path / "dialog.png"),
    )
    facts = _run(krita_home, spec, tmp_path)
    assert facts["action_found"]
    assert facts["tick_count"] >= 3  # the QTimer pumped while Krita stayed responsive
    assert facts["status_text"].startswith("Cancelled at iteration"), facts["status_text"]
    assert facts["dialog_error"] is None
    group = [n for n in facts["tree"] if n["name"] == GROUP]
    frames = [n["name"] for n in facts["tree"] if n["parent"] == GROUP]
    assert group and len(frames) >= 2  # the frames so far were kept
    assert frames[-1].startswith("starry_night – cancelled at")
    remembered = facts["remembered_after"]
    assert remembered["iterations"] == 400 and remembered["frames"] == 100
    assert remembered["styles"] == [str(starry_night)]
    shot = Image.open(tmp_path / "dialog.png")
    assert shot.width > 300 and shot.height > 300

    # a second Krita run opens the dialog with the remembered settings
    again = _spec(source_png, starry_night, daemon, tmp_path / "2", via="dialog")
    again["options"] = {"iterations": 5, "frames": 1, "endpoint": daemon.endpoint, "size": 64}
    facts = _run(krita_home, again, tmp_path / "2")
    assert facts["remembered_before"]["iterations"] == 400
    assert facts["remembered_before"]["styles"] == [str(starry_night)]
    assert facts["status_text"].startswith("Done: 5 iterations"), facts["status_text"]


def test_grey_layer_is_read_and_frames_come_back_as_rgba(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, grey=True)
    spec["options"].update(frames=0, iterations=3)
    facts = _run(krita_home, spec, tmp_path)
    assert facts["color"] == ["GRAYA", "U8"]
    final = "starry_night – final (3 iterations)"
    assert facts["created"] == [GROUP, final]
    layer = next(n for n in facts["tree"] if n["name"] == final)
    assert (layer["model"], layer["bit_depth"]) == ("RGBA", "U8")
    kra = read_kra(tmp_path / "out" / "result.kra")
    frame = kra.pixels(kra.find(final))  # BGRA
    assert frame.shape[2] == 4 and frame[..., 3].min() == 255
    grey = kra.pixels(kra.find("Background"))  # grey + alpha: 2 bytes a pixel
    assert grey.shape[2] == 2
    spread = np.abs(frame[..., :3].astype(int).mean(axis=2) - grey[..., 0]).mean()
    assert spread > 2.0  # stylised, not a copy of the grey source


def test_a_second_run_lands_on_top_and_shows(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path)
    spec["options"].update(frames=1, iterations=3)
    spec["again"] = [{"iterations": 6, "strength": "strong"}]  # a visibly different result
    facts = _run(krita_home, spec, tmp_path)
    first = [GROUP, "starry_night – iteration 2/3", "starry_night – final (3 iterations)"]
    assert facts["created"] == first
    second = ["starry_night – iteration 3/6", "starry_night – final (6 iterations)"]
    assert facts["created_again"] == [[f"{GROUP} #2", *second]]

    kra = read_kra(tmp_path / "out" / "result.kra")
    top = kra.root.children  # bottom-up
    assert [n.name for n in top] == ["Background", GROUP, f"{GROUP} #2"]
    newest = top[2]
    assert newest.visible and [n.visible for n in newest.children] == [False, True]
    final = _bgra_to_rgba(kra.pixels(newest.children[-1]))
    older = _bgra_to_rgba(kra.pixels(top[1].children[-1]))
    assert np.abs(final.astype(int) - older).mean() > 1.0  # the runs differ
    assert np.array_equal(kra.merged(), final)  # what shows is the newest run


def test_animation_placement_makes_keyframes(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path)
    spec["options"].update(placement="animation")
    facts = _run(krita_home, spec, tmp_path)
    assert facts["created"] == [GROUP]  # one animated paint layer, named like a group
    layer = next(n for n in facts["tree"] if n["name"] == GROUP)
    assert layer["type"] == "paintlayer" and layer["animated"] and layer["visible"]
    assert facts["time_range"] == [0, 3, 3]  # plays 0…3, showing the final image
    assert facts["active_after"] == "Background"  # the source stays the active layer

    kra = read_kra(tmp_path / "out" / "result.kra")
    assert [n.name for n in kra.root.children] == ["Background", GROUP]
    node = kra.find(GROUP)
    assert sorted(kra.keyframes(node)) == [0, 1, 2, 3]  # frames = 3: three + the final
    assert kra.playback_range() == (0, 3)
    src = np.asarray(Image.open(source_png).convert("RGBA"))
    shots = [_bgra_to_rgba(kra.frame_pixels(node, t)) for t in range(4)]
    for i, shot in enumerate(shots):
        assert np.array_equal(shot[..., 3], src[..., 3])
        assert np.abs(shot[..., :3].astype(int) - src[..., :3]).mean() > 2.0, i
        for other in shots[i + 1 :]:
            assert np.abs(shot.astype(int) - other).mean() > 0.5
    assert np.array_equal(kra.merged(), shots[-1])  # the final image is what shows


def test_the_dialog_starts_a_daemon_when_none_runs(krita_home, source_png, starry_night, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens here yet
    daemonctl.record_daemon_command(config_dir=krita_home.config / "impasto")
    spec = _spec(source_png, starry_night, None, tmp_path, via="dialog")
    spec["options"] = {"iterations": 3, "frames": 1, "size": 64, "endpoint": endpoint}
    spec["dialog_timeout"] = 200
    spec["final_screenshot"] = str(tmp_path / "dialog-done.png")
    try:
        facts = _run(krita_home, spec, tmp_path)
    finally:
        stopped = daemonctl.stop(endpoint)
    assert stopped, "the dialog's daemon was running"
    statuses = facts["statuses"]
    assert statuses[0] == "Starting the daemon… loading the model", statuses
    assert any("starting" in state for state in facts["states"]), facts["states"]
    assert facts["status_text"].startswith("Done: 3 iterations"), statuses
    assert facts["status_text"].endswith("added 2 layers"), facts["status_text"]
    assert "connected" in facts["connection_text"], facts["connection_text"]
    # before: no daemon to ask; once the dialog's daemon answers, its estimate
    assert facts["estimate_text"] == "Time estimate: once the daemon answers"
    assert facts["estimate_after"].startswith("About "), facts["estimate_after"]
    assert "64×48 px · peak " in facts["estimate_after"], facts["estimate_after"]
    assert facts["dialog_error"] is None
    # the style list offers the source but none of Impasto's own layers
    assert any(c.endswith("› Background") for c in facts["style_choices"]), facts["style_choices"]
    assert not [c for c in facts["style_choices"] if "Impasto" in c or "iteration" in c]
    assert facts["endpoint_placeholder"] == "default local daemon (tcp://127.0.0.1:5755)"
    if os.environ.get("IMPASTO_UPDATE_SCREENSHOTS"):  # the README's picture
        shutil.copy(tmp_path / "dialog-done.png", SCREENSHOT)


def test_the_dialog_puts_frames_on_the_timeline(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, via="dialog")
    spec["options"].update(placement="animation", frames=2)
    facts = _run(krita_home, spec, tmp_path)
    assert facts["dialog_error"] is None
    # before the run: the daemon's estimate for the layer (96x72) at the chosen 64 px
    assert facts["estimate_text"].startswith("About "), facts["estimate_text"]
    assert "64×48 px · peak " in facts["estimate_text"], facts["estimate_text"]
    assert facts["status_after"].endswith("added 3 keyframes"), facts["status_after"]
    kra = read_kra(tmp_path / "out" / "result.kra")
    node = kra.find(GROUP)
    assert sorted(kra.keyframes(node)) == [0, 1, 2]  # frames = 2: two + the final
    assert kra.playback_range() == (0, 2)
    assert np.array_equal(kra.merged(), _bgra_to_rgba(kra.frame_pixels(node, 2)))


def test_the_dialog_refines_a_preview_at_layer_size_from_its_picture(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, via="dialog", refine=True)
    spec["options"].update(size=48, iterations=4, frames=0, stroke_scale="medium")
    # then the same layer through the scripting entry, from its own pixels: the
    # refine's iterations with the refine's schedule, and the preview's stroke scale
    plain = {"size": None, "iterations": 2, "stroke_scale": "fine"}
    spec["again"] = [plain, {**plain, "stroke_scale": "large"}]
    facts = _run(krita_home, spec, tmp_path)
    assert facts["dialog_error"] is None
    assert facts["refine_enabled"] and facts["refine_running"], facts["preview_status"]
    preview, refine = facts["job_options"]
    assert (preview["stroke_scale"], preview["size"], preview["has_init_image"]) == (
        "medium",
        48,
        False,
    )
    assert refine == {
        "stroke_scale": "fine",
        "size": None,  # the layer's own size
        "init": "image",
        "iterations": 2,  # half the preview's
        "has_init_image": True,
    }
    assert [run[0]["stroke_scale"] for run in facts["again_options"]] == ["fine", "large"]
    assert facts["remembered_after"]["stroke_scale"] == "medium"
    assert facts["status_text"].startswith("Done: 2 iterations"), facts["status_text"]

    layers = facts["layer_files"]
    refined_name = "starry_night (refined) – final (2 iterations)"
    assert f"{GROUP} #2" in facts["created"] and refined_name in facts["created"]
    out = tmp_path / "out"

    def rgb(key):
        return pixels(out, layers[key], facts)[..., :3].astype(int)

    upscaled = rgb(f"{GROUP}/starry_night – final (4 iterations)")  # Krita scaled it up
    refined = rgb(f"{GROUP} #2/{refined_name}")
    from_content = rgb(f"{GROUP} #3/starry_night – final (2 iterations)")
    near, far = np.abs(refined - upscaled).mean(), np.abs(from_content - upscaled).mean()
    assert near < 0.6 * far, (near, far)
    assert np.abs(refined - upscaled).mean() > 0.1  # refined, not a copy
    # the stroke scale reached the job through the scripting entry too: it looks different
    large = rgb(f"{GROUP} #4/starry_night – final (2 iterations)")
    assert np.abs(large - from_content).mean() > 1.0


ANIMATION_KEYS = [0, 3, 5, 9]  # with holds between them


def _check_animation(kra, facts):
    """The new layer has a stylised keyframe at each source keyframe's time, alone."""
    node = kra.find(GROUP)
    source = kra.find("Background")
    assert [n.name for n in kra.root.children] == ["Background", GROUP]
    assert node.nodetype == "paintlayer"
    assert sorted(kra.keyframes(source)) == ANIMATION_KEYS
    assert sorted(kra.keyframes(node)) == ANIMATION_KEYS  # the same frame times
    sources = [_bgra_to_rgba(kra.frame_pixels(source, t)) for t in ANIMATION_KEYS]
    shots = [_bgra_to_rgba(kra.frame_pixels(node, t)) for t in ANIMATION_KEYS]
    for i, (shot, src) in enumerate(zip(shots, sources, strict=True)):
        assert np.array_equal(shot[..., 3], src[..., 3])  # the frame's alpha is kept
        assert np.abs(shot[..., :3].astype(int) - src[..., :3]).mean() > 2.0, i
        for other in shots[i + 1 :]:
            assert np.abs(shot.astype(int) - other).mean() > 0.5, i  # each frame its own
    # the painting moves with the picture (the source pans 3 px a frame): each frame is
    # nearer the first one moved along than the first one where it was
    first = shots[0][..., :3].astype(int)
    for t, shot in zip(ANIMATION_KEYS[1:], shots[1:], strict=True):
        moved = np.roll(first, 3 * t, axis=1)
        assert np.abs(shot[..., :3] - moved).mean() < np.abs(shot[..., :3] - first).mean(), t
    assert kra.playback_range() == tuple(facts["range_before"])  # the range is untouched
    return shots


def test_stylise_animation_keeps_the_keyframe_times(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, animate=ANIMATION_KEYS)
    spec["entry"] = "stylize_animation"
    spec["options"].update(size=None)
    facts = _run(krita_home, spec, tmp_path)
    assert facts["source_keys"] == ANIMATION_KEYS
    assert facts["created"] == [GROUP]  # one animated paint layer
    layer = next(n for n in facts["tree"] if n["name"] == GROUP)
    assert layer["type"] == "paintlayer" and layer["animated"]
    assert facts["active_after"] == "Background"  # the source stays the active layer
    assert any(" of 4 · iteration" in t for t in facts["frame_texts"]), facts["frame_texts"]
    assert facts["progress_texts"][-1].startswith("Done: 4 frames"), facts["progress_texts"]
    _check_animation(read_kra(tmp_path / "out" / "result.kra"), facts)


def test_the_stylise_animation_action_fills_the_timeline(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    spec = _spec(source_png, starry_night, daemon, tmp_path, animate=ANIMATION_KEYS, via="dialog")
    spec["action"] = "impasto_stylize_animation"
    spec["options"].update(size=0)
    facts = _run(krita_home, spec, tmp_path)
    assert facts["action_found"] and facts["animation_offered"] == [True, True]
    # before the run: the animation's estimate (first frame + three warm frames)
    assert facts["estimate_text"].startswith("4 frames · about "), facts["estimate_text"]
    assert "96×72 px · peak " in facts["estimate_text"], facts["estimate_text"]
    assert facts["dialog_error"] is None
    assert facts["status_after"].startswith("Done: 4 frames"), facts["status_after"]
    assert facts["status_after"].endswith("added 4 keyframes"), facts["status_after"]
    _check_animation(read_kra(tmp_path / "out" / "result.kra"), facts)
