"""Readers of the generation files of the data directory: DialogSum, SciTLDR and line-aligned parallel text
(Multi30k). Each returns one record ``{"source": str, "target": str, "references": list[str]}`` per example
(``target`` is ``references[0]``); texts are stripped, and an empty source or target is an error. Errors follow
``tasks/files.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapter_fusion.tasks.files import (
    Record,
    aligned_lines,
    check_paths,
    json_object,
    non_empty,
    numbered_lines,
)


@dataclass(frozen=True)
class DialogSumReader:
    """DialogSum: ``dialogsum/dialogsum.train.jsonl.gz`` (gzipped, one Python dict literal per line, single quotes)
    and ``dialogsum/dialogsum.dev.jsonl`` (JSON lines), fields ``fname``, ``dialogue``, ``summary``, ``topic``. Files
    ending in ``.gz`` are gunzipped; each line is parsed as JSON, else with ``ast.literal_eval``. The source is the
    dialogue (turns separated by newlines); the reference is ``summary``, or ``summary1``, ``summary2``, ... where a
    file has several (the DialogSum test release)."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "DialogSumReader")
        records = []
        for number, line in numbered_lines(path):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            item = json_object(line, where, ("dialogue",), python_literal=True)
            numbered = [key for key in item if key.startswith("summary") and key[7:].isdigit()]
            keys = ["summary"] if "summary" in item else sorted(numbered, key=lambda key: int(key[7:]))
            if not keys:
                raise ValueError(f"{where}: expected a 'summary' (or 'summary1', ...) field, got fields {list(item)}")
            references = [non_empty(item[key], where, repr(key)) for key in keys]
            records.append(
                {
                    "source": non_empty(item["dialogue"], where, "'dialogue'"),
                    "target": references[0],
                    "references": references,
                }
            )
        return records


@dataclass(frozen=True)
class SciTldrReader:
    """SciTLDR-A (``scitldr/{train,dev}.jsonl``): JSON lines with ``source`` (list of abstract sentences) and
    ``target`` (list of reference TLDRs; 1 in train, 1-4 in dev). The source is the non-empty sentences joined with
    spaces (one train abstract has an empty sentence); the references are the non-empty TLDRs, the target the first."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "SciTldrReader")
        records = []
        for number, line in numbered_lines(path):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            item = json_object(line, where, ("source", "target"))
            parts = []
            for field in ("source", "target"):
                texts = item[field]
                if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
                    raise ValueError(f"{where}: expected {field!r} as a list of strings, got {str(texts)[:200]}")
                parts.append([text.strip() for text in texts if text.strip()])
                if not parts[-1]:
                    raise ValueError(f"{where}: {field!r} has no non-empty text")
            sentences, references = parts
            records.append({"source": " ".join(sentences), "target": references[0], "references": references})
        return records


@dataclass(frozen=True)
class ParallelLinesReader:
    """Line-aligned source and target files, paths ``(source, target)``, gunzipped when the name ends in ``.gz``:
    Multi30k (``multi30k/{train,val}.{en,de,fr}.gz``). Line i of one file translates line i of the other; the
    reference is the target line."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        source_file, target_file = check_paths(paths, "ParallelLinesReader", ("source", "target"))
        sources, targets = aligned_lines(source_file), aligned_lines(target_file)
        if len(sources) != len(targets):
            raise ValueError(
                f"{source_file} has {len(sources)} lines but {target_file} has {len(targets)}; "
                "the files must be aligned line by line"
            )
        return [
            {"source": source, "target": target, "references": [target]} for source, target in zip(sources, targets)
        ]
