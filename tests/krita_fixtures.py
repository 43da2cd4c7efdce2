"""Fixtures the Krita tests share (registered in conftest): the small source PNG."""

from __future__ import annotations

import pytest

from tests.krita_harness import write_png


@pytest.fixture(scope="module")
def source_png(tmp_path_factory, tubingen):
    return write_png(tubingen, tmp_path_factory.mktemp("png") / "tubingen.png", 96)
