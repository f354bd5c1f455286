"""``push_to_hub``: upload a saved adapter or fusion (a directory or ``bank:NAME``) to a Hub model repository.

Apart from ``adapter_fusion.hub`` (Hub ids and model cards, which the loaders and savers use), since an upload
re-opens the saved artefact through those loaders to check it against its manifest."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion.saving import open_fusion
from adapter_fusion.hub import ACCEPTED, REPO_ID, write_card
from adapter_fusion.layout import artefact_kind
from adapter_fusion.manifest import write_manifest
from adapter_fusion.models.saving import open_adapter


def check_repo_id(repo_id: Any) -> str:
    if not isinstance(repo_id, str) or not REPO_ID.fullmatch(repo_id) or "@" in repo_id:
        raise ValueError(f"repo_id must be a Hub repository id of the form org/name; got {repo_id!r}")
    return repo_id


def push_to_hub(
    source: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload the saved adapter or fusion at ``source`` (a directory or ``bank:NAME``) to the Hub model
    repository ``repo_id`` (created when missing); returns the repository URL.

    The files are checked against their manifest first; the upload is a copy whose card names ``repo_id`` in its
    load instructions (the manifest is rewritten for that card, the base model identity kept). ``source`` is not
    changed."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    directory = resolve_artefact(source)
    kind = artefact_kind(directory) if directory.is_dir() else None
    if kind is None:
        raise ValueError(f"push_to_hub: {source} is not a saved adapter or fusion directory; give {ACCEPTED}")
    _, manifest = (open_fusion if kind == "fusion" else open_adapter)(directory)
    if manifest is None:
        raise ValueError(f"push_to_hub: {source} was saved before manifests; load and save it again first")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="adapter-fusion-push-") as scratch:
        staged = Path(scratch) / "upload"
        shutil.copytree(directory, staged)
        write_card(staged, repo_id)
        write_manifest(staged, kind, manifest["base_model"])
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=repo_id, folder_path=str(staged), repo_type="model",
            commit_message=commit_message or f"Upload adapter-fusion {kind}",
        )  # fmt: skip
    return str(url)


def push_model(save: Any, repo_id: str, directory: str | Path | None, kind: str, **options: Any) -> str:
    """Push the saved artefact ``directory``, or, when None, what ``save(path)`` writes to a temporary one."""
    if directory is not None:
        return push_to_hub(directory, repo_id, **options)
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix=f"adapter-fusion-{kind}-") as scratch:
        return push_to_hub(save(Path(scratch) / repo_id.split("/")[1]), repo_id, **options)
