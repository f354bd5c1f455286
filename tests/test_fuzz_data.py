"""Fuzz: malformed data files end in one error naming the file and line (issue: a tab inside a sentence-pair field
misaligned the pair silently, a field over 128 KB and a missing data directory gave raw tracebacks, a file of
empty texts trained and saved)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import datasets
import pytest

from adapter_fusion.cli import main
from adapter_fusion.tasks import get_task_type, load_task_split
from adapter_fusion.tasks.sentence.readers import MAX_FIELD_CHARS, TsvReader

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"
PAIR_READER = TsvReader(text_a="sentence1", text_b="sentence2", label="label")


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1\ta man walks\ta man\tmoves\tentailment", r"x.tsv:3: expected 4 tab-separated fields .*, got 5"),
        ("1\ta man walks\tentailment", r"x.tsv:3: expected 4 tab-separated fields \(the header's\), got 3"),
        ("1\ta man walks\t \tentailment", r"x.tsv:3: the second text \(column 2\) is empty"),
        ("1\t\ta man moves\tentailment", r"x.tsv:3: the first text \(column 1\) is empty"),
    ],
)
def test_a_malformed_pair_row_is_an_error_with_its_line(row: str, message: str, tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", [RTE_HEADER, "0\ta man walks\ta man moves\tentailment", row])
    with pytest.raises(ValueError, match=message):
        PAIR_READER([path])


def test_headerless_rows_must_keep_the_first_rows_width(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", ["a text\tWorld", "another\ttext\tSports"])
    with pytest.raises(ValueError, match=r"x.tsv:2: expected 2 tab-separated fields \(the first row's\), got 3"):
        TsvReader(text_a=0, label=1, header=False)([path])


def test_long_fields_up_to_the_limit_are_read_and_longer_ones_name_the_line(tmp_path: Path) -> None:
    long = "word " * 40_000  # 200 KB: over csv's default limit of 128 KB, under the reader's
    path = write(tmp_path / "x.tsv", ["sentence\tlabel", "short\t0", f"{long}\t1"])
    assert len(TsvReader(text_a="sentence", label="label")([path]).text_a[1]) == len(long.strip())
    path = write(tmp_path / "y.tsv", ["sentence\tlabel", "short\t0", "short\t1", f"{'x' * (MAX_FIELD_CHARS + 1)}\t1"])
    with pytest.raises(ValueError, match=rf"y.tsv:4: field larger than field limit \({MAX_FIELD_CHARS}\)"):
        TsvReader(text_a="sentence", label="label")([path])
    import csv

    assert csv.field_size_limit() == 131072  # the process-wide limit is restored


def test_undecodable_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    from adapter_fusion.tasks.sentence.readers import JsonReader

    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"sentence\tlabel\ncaf\xe9 good\t1\n")
    with pytest.raises(ValueError, match=r"latin1.tsv: not UTF-8 text \(invalid continuation byte\); save it"):
        TsvReader(text_a="sentence", label="label")([path])
    path = tmp_path / "cut.json"
    path.write_text('[{"text_a": "x", "label": 1},')
    with pytest.raises(ValueError, match=r"cut.json: not valid JSON \(Expecting value: line 1 column 30"):
        JsonReader()([path])


def test_a_pair_record_without_its_second_text_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data" / "lmbff_pcp" / "glue_pretrain" / "MNLI"
    records = [{"text_a": "p", "text_b": "h", "label": "neutral"}, {"text_a": "q", "text_b": None, "label": "neutral"}]
    root.mkdir(parents=True)
    (root / "train.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"'mnli' is a sentence-pair task, but record 1 of .*train.json has no"):
        load_task_split("mnli", "train", data_dir=tmp_path / "data")


def test_all_empty_texts_are_refused() -> None:
    empty = datasets.Dataset.from_dict({"text_a": ["", "  "], "text_b": ["", ""], "label": [0, 1]})
    with pytest.raises(ValueError, match="train dataset: all 2 texts .* are empty"):
        get_task_type("classification").check_dataset(empty, "train dataset")


def cli(env: dict[str, Path], tmp_path: Path, *argv: str) -> list[str]:
    return [
        "train-adapter", "--model", str(env["model"]), "--output", str(tmp_path / "out"),
        "--output-dir", str(tmp_path / "runs"), "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "32",
        "--disable-tqdm", "true", *argv,
    ]  # fmt: skip


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The error line, which must be the only line of ours and the last one (progress bars may come before)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("adapter-fusion")]
    assert len(ours) == 1 and lines[-1] == ours[0], lines
    return ours[0]


def test_cli_names_the_misaligned_line_and_saves_nothing(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_cli_env["data"], data)
    train = data / "glue" / "RTE" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[5] = "4\ta man walks\ta tab\tinside\tentailment"
    train.write_text("\n".join(lines) + "\n")
    assert main(cli(tiny_cli_env, tmp_path, "--task", "rte", "--data-dir", str(data))) == 2
    assert f"error: {train}:6: expected 4 tab-separated fields" in one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_training_data_of_empty_texts(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data" / "lmbff_pcp" / "glue_pretrain" / "sst-5"
    root.mkdir(parents=True)
    for name in ("train.json", "dev.json"):
        (root / name).write_text(json.dumps([{"text_a": "", "label": i % 5} for i in range(20)]))
    assert main(cli(tiny_cli_env, tmp_path, "--task", "sst5", "--data-dir", str(tmp_path / "data"))) == 2
    assert "error: dataset: all 18 texts (text_a) are empty" in one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_no_data_directory_offline_names_the_places_and_the_flag(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter_fusion.tasks.base as base

    def offline(*args: object) -> None:
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(base, "load_hub_dataset", offline)
    monkeypatch.delenv("ADAPTER_FUSION_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(cli(tiny_cli_env, tmp_path, "--task", "sst2")) == 2
    line = one_error(capsys)
    assert "task 'sst2': no local data directory" in line and "--data-dir DIR" in line
    assert os.path.join("shared", "data") in line and "'nyu-mll/glue' could not be loaded" in line
