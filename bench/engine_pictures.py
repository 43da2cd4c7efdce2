"""Make the README picture: grace_hopper.jpg in the style of starry_night.jpg, defaults.

    .venv/bin/python bench/engine_pictures.py [--size 512]

Writes docs/images/result_grace_hopper_starry_night.png and prints the run's figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = Path(os.environ.get("IMPASTO_TEST_IMAGES", REPO / "tests" / "images"))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "images" / "result_grace_hopper_starry_night.png",
    )
    args = ap.parse_args()

    from impasto.daemon.engine import Engine
    from impasto.shared.imagefile import load_image, save_image
    from impasto.shared.options import JobOptions
    from impasto.shared.rawimage import RawImage

    content = load_image(IMAGES / "grace_hopper.jpg").to_numpy()
    style = load_image(IMAGES / "starry_night.jpg").to_numpy()
    t0 = time.perf_counter()
    result = Engine().run(content, [style], JobOptions(size=args.size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(RawImage.from_numpy(result.image), args.out)
    h, w = result.image.shape[:2]
    print(
        f"{args.out}: {w}x{h}, {result.iterations} iterations, "
        f"{time.perf_counter() - t0:.0f} s, losses {result.losses}"
    )


if __name__ == "__main__":
    main()
