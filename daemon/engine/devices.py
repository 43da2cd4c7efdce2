"""Picking the compute device and the settings that measure fastest on it.

``auto`` prefers CUDA, then Apple's MPS, then the CPU. On CUDA, TF32 matmuls and
convolutions keep the picture indistinguishable and run several times faster; on the
CPU, channels-last activations let oneDNN's convolutions run 15-20% faster, and on CPUs
with native bfloat16 dot products (AVX512-BF16, AMX) the network runs in bfloat16: twice
as fast per iteration on a 2-core Zen 4. The Gram products run in bfloat16 too, with
float32 accumulation and ``G − A`` rounded once (losses.GramTarget), and the losses are
summed in float32 (bench/bench_engine.py and bench/bench_iteration.py measure both).
"""

from __future__ import annotations

import torch

from impasto.shared.errors import DEVICE_UNAVAILABLE, ImpastoError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -> a usable torch.device."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ImpastoError(
            f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps", DEVICE_UNAVAILABLE
        ) from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ImpastoError(
                "device 'cuda' asked for, but no CUDA GPU is available", DEVICE_UNAVAILABLE
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ImpastoError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "GPU(s) exist",
                DEVICE_UNAVAILABLE,
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ImpastoError(
                "device 'mps' asked for, but MPS is not available", DEVICE_UNAVAILABLE
            )
        return device
    raise ImpastoError(
        f"device {name!r} is not supported; use cpu, cuda or mps", DEVICE_UNAVAILABLE
    )


def configure(device: torch.device) -> None:
    """Process-wide speed settings for ``device`` (idempotent)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def native_bf16_cpu() -> bool:
    """True where oneDNN runs bfloat16 convolutions in hardware rather than emulating them."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def compute_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The network's dtype for ``precision`` (auto, float32 or bfloat16) on ``device``.

    ``auto`` picks bfloat16 only on CPUs with native support; on CUDA it keeps float32
    with TF32 (see ``configure``), on MPS float32.
    """
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cpu" and native_bf16_cpu():
        return torch.bfloat16
    return torch.float32


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text
