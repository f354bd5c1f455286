"""What the experiment scripts share: the project root, running one CLI command with its wall time, and showing a
command relative to the project root (as the results tables list them)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "experiments" / "adapters"
"""Trained adapters and fusions (git-ignored)."""


def shown(cmd: list[str]) -> str:
    """``cmd`` as a shell line with paths relative to the project root."""
    return shlex.join(cmd).replace(str(ROOT) + "/", "")


def executable(name: str) -> str:
    """``name`` on PATH, else the console script beside this Python (a venv's python run without activating the
    venv: ``.venv/bin/python experiments/...``), else ``name`` (the error then names it)."""
    if shutil.which(name):
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def run(cmd: list[str], label: str) -> int:
    """Run ``cmd`` from the project root, echoing it and its exit status and wall seconds; returns the status."""
    print("$", shlex.join(cmd), flush=True)
    began = time.monotonic()
    result = subprocess.run([executable(cmd[0]), *cmd[1:]], cwd=ROOT)
    print(f"# {label}: exit {result.returncode} after {time.monotonic() - began:.0f} s", flush=True)
    return result.returncode
