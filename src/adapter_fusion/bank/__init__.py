"""The shipped bank of trained source adapters, loadable anywhere an adapter directory is taken as ``bank:NAME``.

>>> FusionTrainer("cr", FusionConfig()).setup_model(["bank:sst2", "bank:imdb", "adapters/cr"])
>>> FusionPipeline.from_pretrained("bank:sst2").predict("a gorgeous film")

``bank:NAME`` is the current version's (``BANK_VERSION``) adapter; ``bank:NAME@v1`` pins an earlier version that
still ships (results made with it stay reproducible).

Each bank entry is an ordinary adapter directory (``save_adapter``) under ``bank/<version>/<name>``, whose
``adapter_config.json`` metadata holds its card (``metadata["card"]``: task, data, recipe and the command that trained
it, dev scores measured on the shipped files, training time, base model and a checksum of its files) and beside it a
human-readable ``<name>.md``. ``$ADAPTER_FUSION_BANK`` points at another bank directory. Shipping a trained adapter
into the bank (evaluating it and writing its card) is ``adapter_fusion.bank.ship``, which builds on the loaders that
this module serves.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from adapter_fusion.hub import is_hub_reference, resolve_hub
from adapter_fusion.io import read_json
from adapter_fusion.manifest import verify_artefact

BANK_VERSION = "v2"
"""The version ``bank:NAME`` resolves to (v1: trained on 2 CPU cores; v2: on one GPU, longer, more tasks)."""
BANK_ENV = "ADAPTER_FUSION_BANK"
PREFIX = "bank:"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
VERSION_PATTERN = re.compile(r"^v[0-9]+$")
PACKAGE_BANKS = Path(__file__).resolve().parent
"""The package folder that holds the shipped bank versions (``PACKAGE_BANKS / "v1"``, ...)."""
SLICE_EXAMPLES = 200
"""Size of the fixed slice of the dev split (``load_task_split(max_examples=200, seed=SLICE_SEED)``) whose score
every card records, so a test can check a shipped adapter quickly
(``adapter-fusion evaluate --adapter bank:NAME --max-examples 200`` prints it)."""
SLICE_SEED = 42


def bank_versions() -> list[str]:
    """The bank versions shipped with the package, oldest first."""
    return sorted((p.name for p in PACKAGE_BANKS.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)),
                  key=lambda v: int(v[1:]))


def bank_directory(version: str | None = None) -> Path:
    """Where the bank lives: ``$ADAPTER_FUSION_BANK`` if set, else the bank shipped with the package; ``version``:
    that shipped version instead (``bank_versions()``)."""
    if version is not None:
        shipped = bank_versions()
        if version not in shipped:
            raise ValueError(f"bank version must be one of {', '.join(shipped)}; got {version!r}")
        return PACKAGE_BANKS / version
    configured = os.environ.get(BANK_ENV)
    return Path(configured).expanduser() if configured else PACKAGE_BANKS / BANK_VERSION


def list_bank(version: str | None = None) -> list[str]:
    """Names of the adapters in the bank (``version``: that shipped version), sorted."""
    root = bank_directory(version)
    if not root.is_dir():
        return []
    return sorted(path.name for path in root.iterdir() if (path / "adapter_config.json").is_file())


def is_bank_reference(reference: object) -> bool:
    return isinstance(reference, str) and reference.startswith(PREFIX)


def resolve_artefact(reference: str | Path) -> Path:
    """The directory ``reference`` names: ``bank:NAME`` is the bank's adapter NAME (``bank:NAME@v1`` in that shipped
    version); a Hub id (``org/name`` that is
    no existing path, or ``hf://org/name``) its local snapshot (``hub.resolve_hub``); anything else is a path."""
    if not is_bank_reference(reference):
        return resolve_hub(str(reference)) if is_hub_reference(reference) else Path(reference)
    name, pinned, version = str(reference)[len(PREFIX) :].partition("@")
    if not NAME_PATTERN.match(name):
        raise ValueError(f"bank adapter name must be letters, digits, '-', '_' or '.'; got {name!r}")
    if pinned and not VERSION_PATTERN.match(version):
        raise ValueError(f"bank version must be v<number> (bank:NAME@v1); got {version!r} in {reference!r}")
    root, names = bank_directory(version or None), list_bank(version or None)
    if name not in names:
        raise KeyError(f"no adapter {name!r} in the bank at {root}; it holds: {', '.join(names)}")
    return root / name


def read_card(name: str) -> dict[str, Any]:
    """The card of bank adapter ``name`` (``NAME@v1``: of that version), after checking the adapter's files against
    its manifest."""
    directory = resolve_artefact(PREFIX + name)
    verify_artefact(directory, "adapter")
    return read_json(directory / "adapter_config.json")["metadata"]["card"]
