"""What ``adapter-fusion predict`` reads: texts, sentence pairs and JSON objects from arguments and ``--input``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parse_input(text: str) -> Any:
    """A JSON object (``{"question": ..., "context": ...}`` for QA, ``{"context", "options"}`` for multiple
    choice) when the text is one, else the text itself."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"input {stripped[:80]!r} looks like JSON but does not parse: {error}") from None
    return text


def parse_label_map(items: list[str]) -> dict[str, list[str]]:
    """``--head-label-map not_entailment=neutral+contradiction entailment=entailment``: each target label and the
    source head's labels whose output rows it averages."""
    label_map: dict[str, list[str]] = {}
    for item in items:
        target, _, sources = item.partition("=")
        names = [name.strip() for name in sources.split("+")]
        if not target.strip() or not all(names) or target.strip() in label_map:
            raise ValueError(
                f"--head-label-map item {item!r}: write TARGET_LABEL=SOURCE_LABEL[+SOURCE_LABEL...], each target "
                "label once"
            )
        label_map[target.strip()] = names
    return label_map


def read_predict_inputs(args: argparse.Namespace, pairs: bool) -> tuple[list[Any], list[str] | None]:
    """Inputs and second sentences from the arguments (``--pair`` per text) and ``--input`` (for a sentence-pair
    task each line is ``first<TAB>second`` or ``{"text": ..., "text_pair": ...}``)."""
    inputs: list[Any] = [parse_input(text) for text in args.texts]
    seconds: list[str] = list(args.pair or [])
    if seconds and len(seconds) != len(inputs):
        raise ValueError(f"give one --pair per text: got {len(inputs)} texts and {len(seconds)} --pair values")
    if args.input:
        try:
            lines = Path(args.input).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(
                f"--input {args.input} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
            ) from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item = parse_input(line)
            if pairs and isinstance(item, str):
                parts = line.split("\t")
                if len(parts) != 2 or not all(part.strip() for part in parts):
                    raise ValueError(
                        f"{args.input}:{number}: a sentence-pair task needs 'first<TAB>second' (exactly one tab, "
                        f"both non-empty); got {len(parts)} field(s)"
                    )
                item, second = parts[0].strip(), parts[1].strip()
                seconds.append(second)
            elif pairs and isinstance(item, dict) and set(item) == {"text", "text_pair"}:
                item, second = item["text"], item["text_pair"]
                seconds.append(second)
            inputs.append(item)
    if not inputs:
        raise ValueError("give texts as arguments or --input FILE (one text or JSON object per line)")
    if seconds and len(seconds) != len(inputs):
        raise ValueError(f"every text needs its second sentence: {len(inputs)} texts, {len(seconds)} second sentences")
    return inputs, seconds or None
