"""Which torch device a ``--device`` option names; the one place a name is checked."""
from __future__ import annotations

import torch

_HINT = "use --device auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` = the first CUDA GPU if there is one, else the CPU; other names as torch reads them.

    Raises ``ValueError`` (one line saying what to do) for a name torch does not know
    (e.g. ``gpu``) and for a CUDA device this machine does not have, so a command stops
    before it reads or writes anything instead of failing deep inside torch.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device}: not a device name; {_HINT}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available on this machine; "
                             "use --device cpu (or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0; {_HINT}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: Apple's MPS is not available on this machine; use --device cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: not supported here; {_HINT}")
    return resolved
