"""Shipping a trained adapter into the bank: copy it, measure its dev scores on the shipped files, write its card.

Apart from ``adapter_fusion.bank`` (which the loaders use to resolve ``bank:NAME``), since this module builds on the
loaders and the evaluation."""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from adapter_fusion.bank import NAME_PATTERN, SLICE_EXAMPLES, SLICE_SEED, bank_directory, list_bank, read_card
from adapter_fusion.evaluation.evaluate import evaluate_adapter
from adapter_fusion.io import atomic_write_text
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
from adapter_fusion.models.loading import resolve_model_name
from adapter_fusion.tasks import load_task_split

WEIGHT_FILES = ("adapter.safetensors", "head.safetensors")


def files_checksum(directory: str | Path, names: tuple[str, ...] | None = None) -> str:
    """SHA-256 over the named files of ``directory`` (all regular files when None), in name order."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def base_model_checksum(name_or_path: str) -> str | None:
    """SHA-256 over a local base model's config and weight files; None for a Hub id (nothing local to hash)."""
    path = Path(name_or_path)
    if not path.is_dir():
        return None
    weights = tuple(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    return files_checksum(path, weights)


def ship_adapter(trained: str | Path, name: str, *, task: str, recipe: str, command: str,
                 metrics: dict[str, Any], trained_on: str, data_dir: str | Path | None = None,
                 project_root: str | Path | None = None, dev_max_examples: int | None = None) -> Path:
    """Copy the adapter saved at ``trained`` into the bank as ``name``, with a card whose dev scores are measured on
    the shipped files (the whole dev split, or its first ``dev_max_examples`` after the fixed shuffle where the
    whole is too long to score on a CPU, and the fixed slice). Paths under ``project_root`` in the recorded
    metadata are written relative to it (a shipped file names no directory of the machine it was made on).
    Returns the card's markdown path."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"bank adapter name must be letters, digits, '-', '_' or '.'; got {name!r}")
    info = read_adapter_config(trained)
    base = resolve_model_name(info.get("base_model"))
    model = AdapterModel.from_pretrained(base)
    loaded = load_adapter(model, trained)
    card: dict[str, Any] = {
        "name": name, "task": task, "recipe": recipe, "command": command, "trained_on": trained_on,
        "base_model": info.get("base_model"), "base_model_checksum": base_model_checksum(base),
        "training": {key: metrics.get(key) for key in ("train_examples", "train_seconds", "global_step", "epoch",
                                                       "trainable_parameters", "seed")},
        "selection_score": {key: value for key, value in metrics.items() if isinstance(value, float)},
        "shipped": datetime.date.today().isoformat(),
    }
    metadata = _relative({**info.get("metadata", {}), "card": card}, project_root)
    target = bank_directory() / name
    with tempfile.TemporaryDirectory() as scratch:
        draft = save_adapter(model, loaded, Path(scratch) / name, head=loaded, metadata=metadata)
        if name in list_bank() and files_checksum(target, WEIGHT_FILES) == files_checksum(draft, WEIGHT_FILES):
            card["dev"] = read_card(name)["dev"]  # the same weights: the measured dev score stands
        else:
            card["dev"] = evaluate_adapter(draft, task, "validation", data_dir, max_examples=dev_max_examples)
            if dev_max_examples is not None:
                card["dev"]["subset_of"] = len(load_task_split(task, "validation", data_dir))
        card["dev_slice"] = evaluate_adapter(draft, task, "validation", data_dir, max_examples=SLICE_EXAMPLES,
                                             seed=SLICE_SEED)
    save_adapter(model, loaded, target, head=loaded, metadata={**metadata, "card": card}, overwrite=True)
    card_path = bank_directory() / f"{name}.md"
    atomic_write_text(card_path, render_card(card))
    return card_path


def _relative(value: Any, root: str | Path | None) -> Any:
    """``value`` with every string path under ``root`` made relative to it (nested dicts and lists too)."""
    if root is None:
        return value
    prefix = str(Path(root).resolve()) + os.sep
    if isinstance(value, dict):
        return {key: _relative(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [_relative(item, root) for item in value]
    return value.replace(prefix, "") if isinstance(value, str) else value


def _scores(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if isinstance(value, float))


def render_card(card: dict[str, Any]) -> str:
    """The markdown card of a bank adapter."""
    dev = card.get("dev", {})
    scores = _scores(dev)
    training = card.get("training", {})
    minutes = (training.get("train_seconds") or 0) / 60
    return "\n".join([
        f"# bank:{card['name']}",
        "",
        f"- task: `{card['task']}` (`adapter-fusion list-tasks` describes its data)",
        f"- dev ({dev.get('split', 'validation')}, {dev.get('examples', '?')} examples): {scores}",
        f"- recipe: {card['recipe']}",
        f"- training: {training.get('train_examples')} examples, {training.get('global_step')} steps, "
        f"{training.get('epoch') or 0:.2f} epochs, {minutes:.1f} minutes on {card['trained_on']}, seed "
        f"{training.get('seed')}",
        f"- base model: `{card['base_model']}` (files sha256 `{card['base_model_checksum']}`)",
        f"- command: `{card['command']}`",
        f"- check: `adapter-fusion evaluate --adapter bank:{card['name']}{_dev_flag(card)}` ({_dev_words(card)}; "
        f"`--max-examples {SLICE_EXAMPLES}`: the fixed slice, {_scores(card.get('dev_slice', {}))})",
        "",
    ])


def _dev_flag(card: dict[str, Any]) -> str:
    subset = card.get("dev", {}).get("subset_of")
    return f" --max-examples {card['dev']['examples']}" if subset else ""


def _dev_words(card: dict[str, Any]) -> str:
    subset = card.get("dev", {}).get("subset_of")
    return f"{card['dev']['examples']} of the {subset} dev examples" if subset else "the whole dev split"
