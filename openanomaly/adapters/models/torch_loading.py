"""Loading, device and dtype choices shared by the PyTorch backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openanomaly.domain.errors import ModelError


def resolve_device(name: str) -> str:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error
    rather than a silent fallback, so a GPU server never runs on its CPU unnoticed."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' asked for, but torch sees no Apple GPU")
    return name


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_hub_model(name: str, source: str | None, loader: Callable[[str], Any]) -> Any:
    """Call ``loader(source)`` and turn the usual failures into errors a user can act on."""
    if not source:
        raise ModelError(f"model {name!r}: set source (a hub id such as "
                         f"amazon/chronos-bolt-small, or a local folder)")
    try:
        return loader(source)
    except (OSError, ValueError) as exc:
        offline = "HF_HUB_OFFLINE" in str(exc) or "offline" in str(exc).lower()
        hint = (" The hub cannot be reached (offline): download the model on a connected "
                "machine and set source to its folder." if offline else "")
        raise ModelError(f"model {name!r}: cannot load {source!r}: {exc}.{hint}") from exc
