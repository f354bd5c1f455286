"""Readers and tasks of the larger source-adapter training sets (tasks/sentence/catalogue_large.py and
readers.py), on hand-made files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from adapter_fusion.tasks import get_task, load_task_split
from adapter_fusion.tasks.sentence.readers import (
    ConcatReader,
    CsvPairsReader,
    JsonLinesReader,
    JsonReader,
    SquadQnliReader,
    split_sentences,
)


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_json_lines_reader_reads_gzip_and_names_the_bad_line(tmp_path: Path) -> None:
    path = write_jsonl_gz(tmp_path / "a.jsonl.gz", [{"q": " Is it? ", "p": "Yes.", "label": True}])
    columns = JsonLinesReader("q", "label", "p")([path])
    assert columns == (["Is it?"], ["Yes."], [True])
    with gzip.open(path, "at", encoding="utf-8") as handle:
        handle.write('{"q": "no label"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl\.gz:2: record lacks field\(s\) \['label', 'p'\]"):
        JsonLinesReader("q", "label", "p")([path])


def test_csv_pairs_and_concat_readers(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text('premise,hypothesis,label\n"A, b",C,entailment\n')
    two = tmp_path / "two.csv"
    two.write_text("premise,hypothesis,label\nD,E,neutral\n")
    record = tmp_path / "x.json"
    record.write_text(json.dumps({"0": {"text_a": "F", "text_b": "G", "label": "contradiction"}}))
    columns = ConcatReader(((1, JsonReader()), (2, CsvPairsReader())))([record, one, two])
    assert columns == (["F", "A, b", "D"], ["G", "C", "E"], ["contradiction", "entailment", "neutral"])
    with pytest.raises(ValueError, match="expects 3 paths; got 1"):
        ConcatReader(((1, JsonReader()), (2, CsvPairsReader())))([record])
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence1,sentence2,label\n")
    with pytest.raises(ValueError, match="lacks one of"):
        CsvPairsReader()([bad])


def test_split_sentences_keeps_abbreviation_free_boundaries() -> None:
    text = "It rained. The 2008 flood came! Did it? yes it did."
    expected = ["It rained.", "The 2008 flood came!", "Did it? yes it did."]
    assert [text[a:b] for a, b in split_sentences(text)] == expected


def test_squad_qnli_pairs_answer_sentence_and_best_overlap_distractor(tmp_path: Path) -> None:
    context = "Paris is big. The tower in Paris was built in 1889. Cats sleep a lot."
    squad = {"data": [{"title": "T", "paragraphs": [{"context": context, "qas": [
        {"id": "1", "question": "When was the tower in Paris built?",
         "answers": [{"text": "1889", "answer_start": context.index("1889")}]},
        {"id": "2", "question": "Excluded question?", "answers": [{"text": "Cats", "answer_start": 52}]},
    ]}]}]}
    squad_path = tmp_path / "squad.json.gz"
    with gzip.open(squad_path, "wt", encoding="utf-8") as handle:
        json.dump(squad, handle)
    qnli_dev = tmp_path / "dev.tsv"
    qnli_dev.write_text("index\tquestion\tsentence\tlabel\n0\texcluded question?\tx\tentailment\n")
    columns = SquadQnliReader()([squad_path, qnli_dev])
    assert columns.text_b == ["The tower in Paris was built in 1889.", "Paris is big."]
    assert columns.labels == ["entailment", "not_entailment"]
    assert set(columns.text_a) == {"When was the tower in Paris built?"}


def test_full_imdb_and_boolq_on_a_tiny_data_directory(tmp_path: Path) -> None:
    reviews = [{"text": f"review {i}", "label": i % 2, "rating": 8 if i % 2 else 2, "id": i} for i in range(2010)]
    write_jsonl_gz(tmp_path / "imdb/train.jsonl.gz", reviews)
    write_jsonl_gz(tmp_path / "imdb/test.jsonl.gz", reviews[:3])
    train = load_task_split("imdb", "train", data_dir=tmp_path)
    validation = load_task_split("imdb", "validation", data_dir=tmp_path)
    assert (len(train), len(validation)) == (10, 2000)
    assert not set(train["text_a"]) & set(validation["text_a"])
    assert load_task_split("imdb", "test", data_dir=tmp_path)["label"] == [0, 1, 0]
    write_jsonl_gz(tmp_path / "boolq/train.jsonl.gz", [{"question": "q", "passage": "p", "label": False}])
    dev = [{"question": "q", "passage": "p", "answer": "True", "title": "t"}]
    write_jsonl_gz(tmp_path / "boolq/dev.jsonl.gz", dev)
    assert load_task_split("boolq", "train", data_dir=tmp_path)["label"] == [0]
    assert load_task_split("boolq", "validation", data_dir=tmp_path)["label"] == [1]
    assert get_task("boolq").label_names == ("no", "yes")
