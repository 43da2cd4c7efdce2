"""The interactive path: GIMP's own dialog for the procedure, in the GUI GIMP on Xvfb.

Builds on tests/test_gimp.py's chroot: the full GIMP 3 runs the procedure interactively
three times; the plug-in's dialog probe first finds OK refused without a style image,
then types values into the dialog as an artist would and presses OK, and records what
each dialog showed (the last must remember the values) and a screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests import gimp_chroot
from tests.gimp_fixtures import gimp_root, x_display  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
LAST_VALUES = (
    "root/.config/GIMP/3.0/plug-in-settings/"
    "GimpProcedureConfigRun-python-fu-impasto-style-transfer.last"
)
EXPECTED_LABELS = [  # group titles and the everyday choices, in the dialog's order
    "Style",
    "Style image",
    "Strength",
    "Keep colours",
    "Second style image",
    "Style blend",
    "Size and quality",
    "Output size cap",
    "Stroke scale",
    "Refine the previous preview at layer size",
    "Quality",
    "Iterations",
    "Feather selection (px)",
    "Frames",
    "Progress frames",
    "Frames as",
    "Frame delay (ms)",
    "Stylise all frames (animation)",
    "Advanced",
]
FOLDED = [
    "Raw content weight",
    "Raw style weight",
    "Daemon URL (endpoint)",
    "Seed (fixed if ≥ 0)",
    "Animation steadiness (temporal weight)",
]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "gimp_dialog.png"


def test_dialog_shows_the_arguments_and_remembers_them(
    gimp_root,  # noqa: F811
    x_display,  # noqa: F811
    daemon,
    tubingen,
    starry_night,
):
    host, work = gimp_chroot.scratch_dir(gimp_root)
    (gimp_root / LAST_VALUES).unlink(missing_ok=True)  # start from the defaults
    try:
        Image.open(tubingen).convert("RGB").resize((48, 36)).save(host / "content.png")
        Image.open(starry_night).convert("RGB").resize((48, 38)).save(host / "starry_night.png")
        typed = {
            "style-file": f"{work}/starry_night.png",
            "endpoint": daemon.endpoint,
            "size": 48,
            "iterations": 3,
            "frames": 1,
        }
        shot = {  # the README's picture: the defaults, a style chosen
            "screenshot": f"{work}/dialog.png",
            "screenshot_set": {"style-file": typed["style-file"], "endpoint": daemon.endpoint},
        }
        steps = [{"endpoint": daemon.endpoint}, {**typed, **shot}, {}]
        (host / "params.json").write_text(json.dumps({"steps": steps}))
        code = f"WORK = {work!r}\n" + (HERE / "gimp_batch_dialog.py").read_text()
        done = gimp_chroot.run_batch(
            gimp_root,
            code,
            display=x_display,
            env={"IMPASTO_GIMP_DIALOG_PROBE": f"{work}/probe.json"},
        )
        log = (done.stdout + done.stderr)[-3000:]
        assert done.returncode == 0, log
        if os.environ.get("IMPASTO_UPDATE_SCREENSHOTS") and (host / "dialog.png").exists():
            shutil.copy(host / "dialog.png", SCREENSHOT)  # for the README
        refused, first, second = json.loads((host / "dialog.json").read_text())
        shown = [json.loads((host / f"dialog-{i}.json").read_text()) for i in (0, 1, 2)]
        # no style image: OK is refused and the dialog says why; nothing runs
        assert not shown[0]["ok_before"] and not shown[0]["ok_after"], shown[0]
        assert "Choose a style image to start." in shown[0]["labels"], " / ".join(
            shown[0]["labels"]
        )
        assert refused["status"] == "cancel" and refused["layers"] == ["Background"], refused
        labels = shown[1]["labels"]
        assert shown[1]["title"] == "Neural Style Transfer"
        positions = [labels.index(label) for label in EXPECTED_LABELS if label in labels]
        missing = [label for label in EXPECTED_LABELS if label not in labels]
        assert not missing, labels
        assert positions == sorted(positions), labels  # grouped in this order
        assert not [label for label in FOLDED if label in labels], "Advanced starts folded"
        assert shown[1]["content_weight_text"] == "0.050"  # the real default, not 0.1
        assert "starry_night.png" not in labels, "a fresh dialog has no style"
        assert not shown[1]["ok_before"] and shown[1]["ok_after"]
        assert first["status"] == "success", (first, log)
        assert "starry_night.png" in shown[2]["labels"], "the last style is remembered"
        # the daemon's estimate for the 48x36 layer at the remembered settings, before OK
        estimate = [label for label in shown[2]["labels"] if label.startswith("About ")]
        assert estimate and "48×36 px · peak " in estimate[0], shown[2]["labels"]
        assert shown[2]["ok_before"]
        assert second["status"] == "success", (second, log)
        assert second["layers"] == [  # the newest run on top, with a name of its own
            "Impasto – starry_night #2",
            "Impasto – starry_night",
            "Background",
        ]
        assert second["visible"] == [True, True, True]
        shot = Image.open(host / "dialog.png")
        assert shot.width > 300 and shot.height > 300
    finally:
        shutil.rmtree(host, ignore_errors=True)
