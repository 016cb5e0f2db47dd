"""Which compute devices this machine has, answered without importing torch when there is no GPU driver."""

from __future__ import annotations

import os
import re
from functools import cache

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


@cache
def cuda_device_count() -> int:
    """Number of usable CUDA devices; 0 without an NVIDIA driver (checked before importing torch)."""
    if os.environ.get("FLOWGRAPH_FORCE_CPU") == "1":
        return 0
    if not os.path.exists("/proc/driver/nvidia/version") and not os.path.exists("/dev/nvidia0"):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve(requested: str, gpu_capable: bool) -> tuple[str, str]:
    """Resolve ``auto|cpu|cuda|cuda:N`` to a concrete device; returns (device, why).

    Raises ``ValueError`` with a message when an explicit CUDA device is not available.
    """
    if requested == "cpu":
        return "cpu", "requested"
    if requested == "auto":
        if not gpu_capable:
            return "cpu", "auto: node runs on CPU only"
        count = cuda_device_count()
        return ("cuda:0", "auto: CUDA present") if count else ("cpu", "auto: no CUDA device, using CPU")
    match = _CUDA.match(requested)
    if not match:
        raise ValueError(f"unknown device {requested!r}")
    index = int(match.group(1) or 0)
    if not gpu_capable:
        raise ValueError(f"device {requested!r} requested but this node type runs on CPU only")
    count = cuda_device_count()
    if index >= count:
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise ValueError(f"device {requested!r} is not available: this machine has {have}")
    return f"cuda:{index}", "requested"
