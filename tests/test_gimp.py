"""The GIMP 3 plug-in inside a real headless GIMP 3 (Debian 13 chroot), against a real daemon.

One GIMP batch runs every case through the PDB (as a script or another plug-in would)
and saves XCFs; a second batch reloads them and dumps layers and pixels, which the
tests below check with numpy. Both batches are shared by the tests of this module.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import gimp_chroot
from tests.gimp_fixtures import gimp_root  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
W, H = 64, 80  # the content layer
SELECTION = (20, 24, 32, 40)  # x, y, w, h in image coordinates (canvas grown by 8, 8)
ALPHA_HOLE = (8, 8, 16, 16)


def _batch(root: Path, script: str, work: str) -> str:
    code = f"WORK = {work!r}\n" + (HERE / script).read_text()
    done = gimp_chroot.run_batch(root, code, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"gimp-console failed ({done.returncode}):\n{output[-3000:]}"
    return output


@pytest.fixture(scope="module")
def gimp_run(gimp_root, daemon, tubingen, starry_night, grace_hopper):  # noqa: F811
    """Run all cases in one GIMP batch, inspect the XCFs in a second; yields the reports."""
    host, work = gimp_chroot.scratch_dir(gimp_root)
    Image.open(tubingen).convert("RGB").resize((W, H)).save(host / "content.png")
    Image.open(starry_night).convert("RGB").resize((96, 76)).save(host / "starry_night.png")
    Image.open(grace_hopper).convert("RGB").resize((60, 70)).save(host / "grace_hopper.png")
    common = {"endpoint": daemon.endpoint, "size": 64, "iterations": 6, "frames": 3, "seed": 1}
    params = {
        "style": "starry_night.png",
        "common": common,
        "cases": {
            "group": {
                "source": "content.png",
                "alpha_hole": ALPHA_HOLE,
                "style2": "grace_hopper.png",
                "settings": {"style-blend": "3,1"},
                "output": "group.xcf",
            },
            "selection": {
                "source": "content.png",
                "canvas": [W + 16, H + 16, 8, 8],
                "precision": "u16",
                "ellipse": SELECTION,
                "save_source": "selection-source.xcf",
                "settings": {
                    "placement": "animation",
                    "frame-delay": 150,
                    "frames": 2,
                    "iterations": 20,  # a small area: enough steps to show the style
                },
                "output": "selection.xcf",
            },
            "feather": {
                "source": "content.png",
                "ellipse": SELECTION,
                "settings": {"feather": 8.0, "frames": 0, "placement": "animation"},
                "output": "feather.xcf",
            },
            "twice": {
                "source": "content.png",
                "settings": {"frames": 1, "iterations": 3},
                "again": {"iterations": 6, "strength": "strong"},
                "output": "twice.xcf",
            },
            "no_daemon": {
                "source": "content.png",
                "settings": {"endpoint": "tcp://127.0.0.1:9", "timeout": 1.0},
            },
            "too_large": {"new_image": [4200, 4100], "settings": {"size": 0}},
            "bad_blend": {"source": "content.png", "settings": {"style-blend": "1,2"}},
            "missing_style": {"source": "content.png", "style": "nowhere.jpg"},
            "missing_more": {
                "source": "content.png",
                "settings": {"more-style-files": "/nowhere/wave.jpg"},
            },
        },
    }
    (host / "params.json").write_text(json.dumps(params))
    run_log = _batch(gimp_root, "gimp_batch_run.py", work)
    report = json.loads((host / "run.json").read_text())
    (host / "inspect.json").write_text(
        json.dumps(
            ["group.xcf", "selection.xcf", "selection-source.xcf", "feather.xcf", "twice.xcf"]
        )
    )
    _batch(gimp_root, "gimp_batch_inspect.py", work)
    inspected = json.loads((host / "inspect-out.json").read_text())
    yield {"host": host, "report": report, "inspect": inspected, "log": run_log}
    shutil.rmtree(host, ignore_errors=True)


def _pixels(host: Path, xcf: str, entry: dict) -> np.ndarray:
    w, h = entry["size"]
    data = (host / f"{xcf}.{entry['index']}.rgba").read_bytes()
    return np.frombuffer(data, np.uint8).reshape(h, w, 4).astype(np.int16)


def _composite(host: Path, xcf: str, size: list[int]) -> np.ndarray:
    data = (host / f"{xcf}.composite.rgba").read_bytes()
    return np.frombuffer(data, np.uint8).reshape(size[1], size[0], 4).astype(np.int16)


def _ok(run, case):
    record = run["report"][case]
    assert record["status"] == "success", f"{case}: {record}\n{run['log'][-2000:]}"


def test_frames_land_in_a_layer_group_with_alpha_kept(gimp_run):
    _ok(gimp_run, "group")
    info = gimp_run["inspect"]["group.xcf"]
    top = info["layers"][0]
    assert top["group"] and top["name"] == "Impasto – starry_night + grace_hopper", top
    frames = top["children"]  # top to bottom: the final image first
    assert len(frames) >= 3, [f["name"] for f in frames]
    assert "final" in frames[0]["name"] and frames[0]["visible"]
    assert not any(f["visible"] for f in frames[1:]), "intermediate frames stay hidden"
    source = _pixels(gimp_run["host"], "group.xcf", info["layers"][1])
    assert info["layers"][1]["name"] == "Background"
    images = [_pixels(gimp_run["host"], "group.xcf", f) for f in frames]
    x, y, w, h = ALPHA_HOLE
    for frame, pixels in zip(frames, images, strict=True):
        assert frame["offsets"] == [0, 0] and frame["size"] == [W, H]
        assert not frame["mask"]
        assert np.abs(pixels[..., :3] - source[..., :3]).mean() > 3, frame["name"]
        # the job ran at 80 % (size cap 64) and was scaled back: allow soft hole edges
        assert (pixels[y + 3 : y + h - 3, x + 3 : x + w - 3, 3] < 16).all(), "the hole stays"
        # opaque elsewhere, up to the layer's edges (no seam from scaling the frame up)
        assert (pixels[y + h + 3 :, :, 3] >= 250).all() and (pixels[-1, :, 3] == 255).all()
    gray = source[..., :3].mean(axis=2)[y + h :].ravel()
    final = images[0][..., :3].mean(axis=2)[y + h :].ravel()
    assert np.corrcoef(gray, final)[0, 1] > 0.5, "the result no longer shows the layer"
    for a, b in itertools.pairwise(images):
        assert np.abs(a[..., :3] - b[..., :3]).mean() > 0.5, "frames differ from each other"


def test_frames_count_and_a_second_run_lands_on_top_and_shows(gimp_run):
    _ok(gimp_run, "twice")
    info = gimp_run["inspect"]["twice.xcf"]
    newest, older, source = info["layers"]  # top to bottom
    assert newest["name"] == "Impasto – starry_night #2" and newest["visible"]
    assert older["name"] == "Impasto – starry_night" and source["name"] == "Background"
    # frames = 1: one progress layer besides the final, hidden
    assert [f["name"] for f in older["children"]] == [
        "starry_night – final (3 iterations)",
        "starry_night – iteration 2/3",
    ]
    assert [f["name"] for f in newest["children"]] == [
        "starry_night – final (6 iterations)",
        "starry_night – iteration 3/6",
    ]
    assert [f["visible"] for f in newest["children"]] == [True, False]
    final = _pixels(gimp_run["host"], "twice.xcf", newest["children"][0])
    before = _pixels(gimp_run["host"], "twice.xcf", older["children"][0])
    assert np.abs(final - before).mean() > 1.0, "the two runs differ"
    composite = _composite(gimp_run["host"], "twice.xcf", info["size"])
    assert np.abs(composite - final).max() <= 1, "the exported image is the newest run"


def test_selection_masks_animation_frames_on_a_16_bit_offset_layer(gimp_run):
    _ok(gimp_run, "selection")
    record = gimp_run["report"]["selection"]
    assert record["base_offsets"] == [8, 8], "the source layer keeps its offset"
    info = gimp_run["inspect"]["selection.xcf"]
    assert info["precision"].startswith("u16"), info["precision"]
    *frames, base = info["layers"]
    assert base["offsets"] == [8, 8] and base["size"] == [W, H]
    assert len(frames) >= 2
    assert all(f["name"].endswith("(150 ms)") for f in frames), [f["name"] for f in frames]
    assert "final" in frames[0]["name"]
    x, y, w, h = SELECTION
    masks = []
    for frame in frames:
        assert frame["offsets"] == [x, y] and frame["size"] == [w, h] and frame["mask"]
        data = (gimp_run["host"] / f"selection.xcf.{frame['index']}.mask").read_bytes()
        masks.append(np.frombuffer(data, np.uint8).reshape(h, w))
    mask = masks[0]
    assert mask[0, 0] == 0 and mask[h // 2, w // 2] == 255, "the mask is the ellipse"
    assert all((m == mask).all() for m in masks)
    after = _composite(gimp_run["host"], "selection.xcf", info["size"])
    before_info = gimp_run["inspect"]["selection-source.xcf"]
    assert before_info["size"] == info["size"] == [W + 16, H + 16]
    before = _composite(gimp_run["host"], "selection-source.xcf", before_info["size"])
    selected = np.zeros(after.shape[:2], np.uint8)
    selected[y : y + h, x : x + w] = mask
    outside = selected == 0
    assert (after[outside] == before[outside]).all(), "pixels outside the selection changed"
    inside = selected == 255
    change = np.abs(after[inside][:, :3] - before[inside][:, :3]).mean()
    assert change > 3, "the selection was not stylised"


def test_unreachable_daemon_is_a_clear_execution_error(gimp_run):
    record = gimp_run["report"]["no_daemon"]
    assert record["status"] == "execution-error", record
    assert "tcp://127.0.0.1:9" in record["message"]
    assert "impasto daemon start" in record["message"]
    assert record["layers"] == ["Background"], "nothing was added"


def test_too_large_image_is_refused_before_sending(gimp_run):
    record = gimp_run["report"]["too_large"]
    assert record["status"] == "execution-error", record
    assert "4200x4100" in record["message"] and "over the limit" in record["message"]
    assert record["layers"] == ["big"]


def test_bad_arguments_name_the_problem(gimp_run):
    report = gimp_run["report"]
    for case, status, expected in (
        ("bad_blend", "execution-error", "2 weights given for 1 style images"),
        ("missing_style", "calling-error", "argument 'style-file'"),  # GIMP checks files
        ("missing_more", "execution-error", "style image /nowhere/wave.jpg does not exist"),
    ):
        record = report[case]
        assert record["status"] == status, record
        assert expected in record["message"], record["message"]
        assert record["layers"] == ["Background"]


def test_feathering_softens_the_mask_and_restores_the_selection(gimp_run):
    _ok(gimp_run, "feather")
    x, y, w, h = SELECTION
    record = gimp_run["report"]["feather"]
    assert record["selection_after"] == [True, x, y, x + w, y + h], "selection restored"
    final, _base = gimp_run["inspect"]["feather.xcf"]["layers"]
    fx, fy = final["offsets"]
    fw, fh = final["size"]
    assert fx < x and fy < y and fx + fw > x + w and fy + fh > y + h, final
    data = (gimp_run["host"] / f"feather.xcf.{final['index']}.mask").read_bytes()
    mask = np.frombuffer(data, np.uint8)
    soft = ((mask > 0) & (mask < 255)).sum()
    assert soft > 2 * (w + h), "a feathered edge is a band of partial values"
