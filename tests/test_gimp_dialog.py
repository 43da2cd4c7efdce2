"""The interactive path: GIMP's own dialog for the procedure, in the GUI GIMP on Xvfb.

Builds on tests/test_gimp.py's chroot: the full GIMP 3 runs the procedure interactively
twice; the plug-in's dialog probe types values into the first dialog as an artist would
and presses OK, and records what both dialogs showed (the second must remember them).
"""

from __future__ import annotations

import json
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
EXPECTED_LABELS = [
    "Style image",
    "Second style image",
    "Style blend",
    "Strength",
    "Output size cap",
    "Iterations",
    "Keep colours",
    "Progress frames",
    "Frames as",
    "Frame delay (ms)",
    "Feather selection (px)",
]


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
        (host / "params.json").write_text(json.dumps({"steps": [typed, {}]}))
        code = f"WORK = {work!r}\n" + (HERE / "gimp_batch_dialog.py").read_text()
        done = gimp_chroot.run_batch(
            gimp_root,
            code,
            display=x_display,
            env={"IMPASTO_GIMP_DIALOG_PROBE": f"{work}/probe.json"},
        )
        log = (done.stdout + done.stderr)[-3000:]
        assert done.returncode == 0, log
        first, second = json.loads((host / "dialog.json").read_text())
        shown = [json.loads((host / f"dialog-{i}.json").read_text()) for i in (0, 1)]
        assert shown[0]["title"] == "Neural Style Transfer"
        missing = [label for label in EXPECTED_LABELS if label not in shown[0]["labels"]]
        assert not missing, shown[0]["labels"]
        assert "starry_night.png" not in shown[0]["labels"], "a fresh dialog has no style"
        assert first["status"] == "success", (first, log)
        assert "starry_night.png" in shown[1]["labels"], "the last style is remembered"
        assert second["status"] == "success", (second, log)
        assert second["layers"] == [  # each result goes directly above its source layer
            "Impasto – starry_night",
            "Impasto – starry_night #1",
            "Background",
        ]
    finally:
        shutil.rmtree(host, ignore_errors=True)
