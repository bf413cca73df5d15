"""Provenance helpers for ``meta.json``."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """The current git commit of the project (``"unknown"`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
