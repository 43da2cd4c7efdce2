"""JobOptions: presets, derived values and validation of untrusted values."""

from __future__ import annotations

import math

import pytest

from impasto.shared.options import (
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_STYLE_WEIGHT,
    QUALITY_PRESETS,
    STRENGTH_PRESETS,
    JobOptions,
    OptionsError,
)


def test_defaults_are_valid_and_round_trip_through_a_dict():
    opts = JobOptions()
    opts.validate()
    again = JobOptions.from_dict(opts.to_dict())
    assert again == opts
    assert opts.total_iterations() == QUALITY_PRESETS["standard"]
    assert opts.effective_style_weight() == DEFAULT_STYLE_WEIGHT
    assert opts.content_weight == DEFAULT_CONTENT_WEIGHT


def test_presets_and_overrides():
    assert JobOptions(quality="draft").total_iterations() == QUALITY_PRESETS["draft"]
    assert JobOptions(quality="draft", iterations=7).total_iterations() == 7
    strong = JobOptions(strength="strong").effective_style_weight()
    assert strong == pytest.approx(DEFAULT_STYLE_WEIGHT * STRENGTH_PRESETS["strong"])
    assert JobOptions(strength="strong", style_weight=2.5).effective_style_weight() == 2.5
    assert QUALITY_PRESETS["draft"] < QUALITY_PRESETS["standard"] < QUALITY_PRESETS["fine"]
    assert STRENGTH_PRESETS["subtle"] < STRENGTH_PRESETS["balanced"] < STRENGTH_PRESETS["strong"]


def test_blend_weights_are_normalised_and_checked():
    assert JobOptions().blend_weights(2) == [0.5, 0.5]
    assert JobOptions(style_blend=[3.0, 1.0]).blend_weights(2) == [0.75, 0.25]
    with pytest.raises(OptionsError, match="style_blend"):
        JobOptions(style_blend=[1.0]).blend_weights(2)
    with pytest.raises(OptionsError, match="zero"):
        JobOptions(style_blend=[0.0, 0.0]).blend_weights(2)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"content_weight": math.nan}, "content_weight"),
        ({"tv_weight": math.inf}, "tv_weight"),
        ({"style_weight": -1.0}, "style_weight"),
        ({"content_weight": -0.5}, "content_weight"),
        ({"style_blend": [1.0, -1.0]}, "style_blend"),
        ({"style_blend": [1.0, math.nan]}, "style_blend"),
        ({"style_layer_weights": [1.0, 2.0]}, "style_layer_weights"),
        ({"size": 8}, "size"),
        ({"size": 100_000}, "size"),
        ({"size": 512.0}, "size"),
        ({"iterations": True}, "iterations"),
        ({"iterations": "300"}, "iterations"),
        ({"seed": -1}, "seed"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"time_limit": -3}, "time_limit"),
        ({"quality": "ultra"}, "quality"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"preserve_colors": True}, "preserve_colors"),
        ({"style_layers": []}, "style_layers"),
        ({"content_layers": ["conv4_2", 3]}, "content_layers"),
        ({"device": ""}, "device"),
        ({"frames": -1}, "frames"),
        ({"style_scale": 0.0}, "style_scale"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_name_their_field(data, field):
    with pytest.raises(OptionsError) as err:
        JobOptions.from_dict(data)
    assert err.value.field == field
    assert field in str(err.value)


def test_from_dict_rejects_non_mappings_and_coerces_numbers():
    with pytest.raises(OptionsError):
        JobOptions.from_dict(["size", 512])
    opts = JobOptions.from_dict({"content_weight": 1, "style_layers": ("conv1_1",)})
    assert isinstance(opts.content_weight, float) and opts.style_layers == ["conv1_1"]


def test_replace_validates():
    opts = JobOptions()
    assert opts.replace(size=256).size == 256
    with pytest.raises(OptionsError, match="size"):
        opts.replace(size=0)


def test_options_module_imports_without_torch_or_numpy():
    import subprocess
    import sys

    code = (
        "import impasto.shared.options, sys; print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_refinement_starts_from_the_preview_at_the_layers_size():
    preview = JobOptions(size=256, iterations=200, stroke_scale="large")
    refine = preview.refinement()
    assert refine.size is None and refine.init == "image"
    assert refine.stroke_scale == "fine" and refine.iterations == 100
    assert preview.refinement(size=2048, iterations=40).size == 2048
