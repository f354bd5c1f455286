"""Readers of the multiple-choice files of the data directory: DREAM, CODAH and PIQA. Each returns one record
``{"context": str, "question": str, "options": list[str], "label": int}`` per question (``question`` is ``""`` where
there is none). Errors follow ``tasks/files.py``.
"""

from __future__ import annotations

import json
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
    open_text,
)


@dataclass(frozen=True)
class DreamReader:
    """DREAM (``dream/{train,dev,test}.json``): a JSON list of ``[dialogue_lines, questions, dialogue_id]`` with
    questions ``{"question", "choice": [3 options], "answer": option text}``; one record per question. The context is
    the dialogue lines joined with newlines; the label is the index of the answer among the choices (an answer that is
    not exactly one of the choices is an error naming the dialogue id)."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "DreamReader")
        with open_text(path) as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error}); expected a list of dialogues") from None
        if not isinstance(data, list):
            raise ValueError(
                f"{path}: expected a JSON list of [dialogue_lines, questions, id], got {type(data).__name__}"
            )
        records = []
        for d, item in enumerate(data):
            if not (
                isinstance(item, list) and len(item) == 3 and isinstance(item[0], list) and isinstance(item[1], list)
            ):
                raise ValueError(
                    f"{path}: dialogue {d}: expected [dialogue_lines, questions, id], got {str(item)[:200]}"
                )
            lines, questions, dialogue_id = item
            where = f"{path}: dialogue {d} (id {dialogue_id!r})"
            context = "\n".join(non_empty(line, where, "dialogue lines") for line in lines)
            if not context:
                raise ValueError(f"{where}: empty dialogue")
            for q, entry in enumerate(questions):
                where_q = f"{where}, question {q}"
                if not isinstance(entry, dict) or not isinstance(entry.get("choice"), list) or not entry["choice"]:
                    raise ValueError(
                        f"{where_q}: expected {{'question', 'choice': [options], 'answer'}}, got {entry!r}"
                    )
                options = entry["choice"]
                hits = [i for i, option in enumerate(options) if option == entry.get("answer")]
                if len(hits) != 1:
                    found = "not among" if not hits else f"{len(hits)} times among"
                    raise ValueError(f"{where_q}: answer {entry.get('answer')!r} is {found} the choices {options!r}")
                records.append(
                    {
                        "context": context,
                        "question": non_empty(entry.get("question"), where_q, "'question'"),
                        "options": [non_empty(option, where_q, "each choice") for option in options],
                        "label": hits[0],
                    }
                )
        return records


@dataclass(frozen=True)
class CodahReader:
    """CODAH (``codah/cv_split/fold_k/{train,dev,test}.tsv``, ``codah/full_data.tsv``): TSV without header or
    quoting, 7 fields: category (one letter, empty on a few rows), prefix, 4 endings, label 0-3. The context is the
    prefix, the question ``""``; records also carry ``"category"``."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "CodahReader")
        records = []
        for number, line in numbered_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 7 or fields[6].strip() not in ("0", "1", "2", "3"):
                raise ValueError(
                    f"{path}:{number}: expected 7 tab-separated fields (category, prefix, 4 endings, label 0-3), "
                    f"got {len(fields)}: {line[:200]!r}"
                )
            where = f"{path}:{number}"
            records.append(
                {
                    "context": non_empty(fields[1], where, "the prefix"),
                    "question": "",
                    "options": [non_empty(ending, where, "each ending") for ending in fields[2:6]],
                    "label": int(fields[6]),
                    "category": fields[0].strip(),
                }
            )
        return records


@dataclass(frozen=True)
class PiqaReader:
    """PIQA, paths ``(valid.jsonl, valid-labels.lst)``: JSON lines ``{"goal", "sol1", "sol2"}`` and one label (0 or
    1) per line, aligned line by line. The context is the goal, the question ``""``, the options ``[sol1, sol2]``."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        examples, label_file = check_paths(paths, "PiqaReader", ("examples .jsonl", "labels .lst"))
        lines, labels = aligned_lines(examples), aligned_lines(label_file)
        if len(lines) != len(labels):
            raise ValueError(f"{examples} has {len(lines)} examples but {label_file} has {len(labels)} labels")
        records = []
        for number, (line, label) in enumerate(zip(lines, labels), start=1):
            item = json_object(line, f"{examples}:{number}", ("goal", "sol1", "sol2"))
            if label not in ("0", "1"):
                raise ValueError(f"{label_file}:{number}: expected a label 0 or 1, got {label!r}")
            where = f"{examples}:{number}"
            records.append(
                {
                    "context": non_empty(item["goal"], where, "'goal'"),
                    "question": "",
                    "options": [non_empty(item["sol1"], where, "'sol1'"), non_empty(item["sol2"], where, "'sol2'")],
                    "label": int(label),
                }
            )
        return records
