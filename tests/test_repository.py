"""The repository itself: no file names a path of the machine it was made on (issue 15)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"""(?:^|["'\s=(])(/(?:work|root|home|Users)/[^\s"']+|/tmp/pytest-of-[^\s"']+)""")


def tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in names.decode().split("\0") if name]


def test_no_tracked_file_names_a_path_of_the_development_machine() -> None:
    found = []
    for path in tracked_files():
        if not path.is_file() or path.suffix in {".safetensors", ".png", ".bin", ".gz", ".onnx"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(ROOT)}: {match.group(1)}" for match in MACHINE_PATH.finditer(text)]
    assert not found, "absolute paths of a machine (use project- or cache-relative ones):\n" + "\n".join(found[:20])
