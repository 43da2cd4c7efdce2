"""GIMP 3 "Stylise all frames": an animation image's frame layers through one sequence job.

A real headless GIMP 3 (Debian 13 chroot) builds a 4-frame animation "Frame k (100ms)"
(frame 3 holds frame 2), calls the procedure through the PDB with all-frames on, against
the real daemon, and saves an XCF; a second batch reloads it and dumps its layers.
"""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.gimp_fixtures import gimp_root  # noqa: F401  (a fixture)
from tests.test_gimp import _batch, _pixels

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

W, H = 72, 56
OFFSETS = [0, 3, 3, 6]  # px to the right per frame: frame 3 is a hold of frame 2
STYLE = "starry_night"


@pytest.fixture(scope="module")
def animation_run(gimp_root, daemon, tubingen, starry_night):  # noqa: F811
    from tests import gimp_chroot

    host, work = gimp_chroot.scratch_dir(gimp_root)
    Image.open(tubingen).convert("RGB").resize((W, H)).save(host / "content.png")
    Image.open(starry_night).convert("RGB").resize((96, 76)).save(host / f"{STYLE}.png")
    params = {
        "style": f"{STYLE}.png",
        "common": {"endpoint": daemon.endpoint, "iterations": 6, "seed": 1},
        "cases": {
            "animation": {
                "source": "content.png",
                "animation": OFFSETS,
                "settings": {"all-frames": True},
                "output": "animation.xcf",
            }
        },
    }
    (host / "params.json").write_text(json.dumps(params))
    log = _batch(gimp_root, "gimp_batch_run.py", work)
    report = json.loads((host / "run.json").read_text())
    (host / "inspect.json").write_text(json.dumps(["animation.xcf"]))
    _batch(gimp_root, "gimp_batch_inspect.py", work)
    inspected = json.loads((host / "inspect-out.json").read_text())
    yield {"host": host, "report": report, "inspect": inspected, "log": log}
    shutil.rmtree(host, ignore_errors=True)


def test_all_frames_become_a_group_of_stylised_frames_with_their_timing(animation_run):
    record = animation_run["report"]["animation"]
    assert record["status"] == "success", f"{record}\n{animation_run['log'][-2000:]}"
    layers = animation_run["inspect"]["animation.xcf"]["layers"]  # top to bottom
    group, *sources = layers
    assert [s["name"] for s in sources] == [f"Frame {k} (100ms)" for k in (4, 3, 2, 1)]
    assert group["group"] and group["name"] == f"Impasto – {STYLE}", group
    names = [f["name"] for f in group["children"]]
    assert names == [f"{STYLE} – Frame {k} (100ms) (replace)" for k in (4, 3, 2, 1)], names
    host = animation_run["host"]
    results = [_pixels(host, "animation.xcf", f) for f in reversed(group["children"])]
    originals = [_pixels(host, "animation.xcf", s) for s in reversed(sources)]
    for frame in group["children"]:
        assert frame["size"] == [W, H] and frame["offsets"] == [0, 0] and frame["visible"]
    for k, (result, original) in enumerate(zip(results, originals, strict=True)):
        dx = OFFSETS[k]
        covered = (slice(None), slice(dx, W))  # where this frame's own layer lies
        change = np.abs(result[covered][..., :3] - original[:, : W - dx, :3]).mean()
        assert change > 3, f"frame {k + 1} is not stylised ({change:.2f})"
        assert (result[..., 3] == 255).all(), "combine frames show the frame below"
    assert np.array_equal(results[1], results[2]), "a hold is stylised once, written twice"
    for a, b in itertools.combinations([results[0], results[1], results[3]], 2):
        assert np.abs(a[..., :3] - b[..., :3]).mean() > 0.5, "each frame is its own"
