"""Device selection, the same for the serving engine and the trainers."""
from __future__ import annotations

import torch


def select_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names (``cpu``, ``cuda:1``) as given.

    Raises:
        RuntimeError: for a name torch does not know (``torch.device`` raises it).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
