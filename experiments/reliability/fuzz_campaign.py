"""Fuzz campaign (issue 14, "run the classes yourself with fresh cases of your own"): bad inputs a careless or
hostile user gives the ``adapter-fusion`` CLI and the artefacts it writes and reads, each run as a real CLI
subprocess (``python -m adapter_fusion.cli``, ``HF_HUB_OFFLINE=1``) in a fresh temporary directory, on the test
suite's tiny random BERT (``tests/conftest.py: make_cli_env``).

Every case names the class of harm it probes (data-loss, silent-wrong, traceback) and what a correct CLI does:
``refuse`` (exit 2 with one line on stderr), ``interrupt`` (Ctrl-C: exit 130, one line), ``accept`` (exit 0) or
``either`` (a clean refusal or a clean success). The verdict is automatic:

- data-loss: a file that existed before the run and is not the case's named output changed or vanished, or the
  run wrote a new file outside its named output (the case's directory is hashed before and after);
- silent-wrong: exit 0 where the CLI should refuse, or NaN / inf in what it printed;
- traceback: ``Traceback`` on stderr, or more than one non-empty stderr line (a library's progress bar, such as
  transformers' "Loading weights", is not counted; the report marks where one came before the error line);
- wrong-exit: any other exit code than the expected one (1 = internal error for a user's mistake);
- OK otherwise.

    python experiments/reliability/fuzz_campaign.py        # writes experiments/results/fuzz_campaign.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS: dict[str, Path] = {}  # set by main: what setup built
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "experiments" / "results" / "fuzz_campaign.md"
TRAIN = ["--max-steps", "2", "--batch-size", "4", "--max-seq-length", "32", "--disable-tqdm", "true",
         "--eval-steps", "2", "--save-total-limit", "2", "--load-best-model-at-end", "false"]  # fmt: skip
PROGRESS = re.compile(r"\d+%\|.*\|")  # a library's progress bar (tqdm), not an error line
EXPECTED = {"refuse": {2}, "interrupt": {130}, "accept": {0}, "either": {0, 2}}


@dataclass
class Case:
    """One bad input. ``argv`` may use {W} (the case's directory, also the working directory), {M} (tiny base
    model), {M1} (another tiny base of the same shape), {D} (data directory, a copy in {W}), {S}/{R} (saved SST-2 /
    RTE adapters, copies in {W}) and {F} (a saved attention fusion of both, a copy in {W})."""

    harm: str
    what: str
    argv: list[str]
    expect: str = "refuse"
    prepare: Callable[[Path], None] | None = None
    outputs: tuple[str, ...] = ()  # paths under {W} the run may write (only for expect accept/either)
    interrupt_after: str | None = None  # stdout prefix after which to send SIGINT


@dataclass
class Outcome:
    case: Case
    code: int
    stderr: str
    stdout: str
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def first_line(self) -> str:
        """The first stderr line that is not a progress bar."""
        return next((x for x in self.stderr.splitlines() if x.strip() and not PROGRESS.search(x)), "")

    def verdict(self) -> tuple[str, str]:
        """(verdict, reason): OK, or the class of failure."""
        lines = [line for line in self.stderr.splitlines() if line.strip() and not PROGRESS.search(line)]
        expected = EXPECTED[self.case.expect]
        lost = [c for c in self.changed if not c.endswith("(new)")]
        if lost:
            return "data-loss", "changed: " + ", ".join(lost[:3])
        if self.code == 0 and 0 not in expected:
            return "silent-wrong", "exit 0 where the input should be refused"
        if self.changed:
            return "data-loss", "wrote outside its output: " + ", ".join(self.changed[:3])
        if self.code == 0 and any(token in self.stdout for token in ("NaN", "Infinity", "nan,", "inf,")):
            return "silent-wrong", "NaN/inf in the output"
        if "Traceback" in self.stderr:
            return "traceback", "Traceback on stderr"
        if self.code != 0 and len(lines) != 1:
            return "traceback", f"{len(lines)} stderr lines"
        if self.code not in expected:
            return "wrong-exit", f"exit {self.code}, expected {sorted(expected)}"
        return "OK", ""


# --------------------------------------------------------------------------- the workspace
def digest_tree(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """relative path -> sha256 (or the target of a link) of everything under ``root`` except ``skip``."""
    result = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            result[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            result[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            result[relative] = "dir"
    return result


def rehash(directory: Path) -> None:
    """A hostile edit: recompute the manifest's checksums after tampering, so only other checks can catch it."""
    from adapter_fusion.manifest import file_sha256

    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {
        p.relative_to(directory).as_posix(): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def setup(root: Path) -> dict[str, Path]:
    """The tiny base models, data and artefacts every case copies (built in-process: this is not under test)."""
    from adapter_fusion.cli import main
    from conftest import build_tiny_model, make_cli_env

    env = make_cli_env(root / "env")
    other = root / "env" / "model1"  # same shape, other weights: "another base model"
    shutil.copytree(env["model"], other)
    from adapter_fusion.models import load_tokenizer

    build_tiny_model("bert", seed=1, vocab_size=load_tokenizer(env["model"]).vocab_size).save_pretrained(other)
    art = root / "art"
    common = ["--model", str(env["model"]), "--data-dir", str(env["data"]), *TRAIN]
    for task in ("sst2", "rte"):
        code = main(["train-adapter", "--task", task, "--output", str(art / task), "--bottleneck-size", "4",
                     "--output-dir", str(root / "runs" / task), *common,
                     *(["--pooling", "cls"] if task == "sst2" else [])])  # fmt: skip  (cls: AdapterHub exports it)
        assert code == 0, task
    code = main(["train-fusion", "--task", "sst2", "--adapters", str(art / "sst2"), str(art / "rte"),
                 "--output", str(art / "fusion"), "--output-dir", str(root / "runs" / "fusion"), *common])  # fmt: skip
    assert code == 0
    from adapter_fusion.interop.adapterhub_export import export_adapterhub

    export_adapterhub(str(art / "sst2"), str(art / "hub_sst2"))
    return {"M": env["model"], "M1": other, "D": env["data"], "S": art / "sst2", "R": art / "rte",
            "F": art / "fusion", "H": art / "hub_sst2"}  # fmt: skip


def workspace(paths: dict[str, Path], case_dir: Path) -> dict[str, str]:
    """Copies of the artefacts and data inside the case's directory, plus a user's own files beside them."""
    case_dir.mkdir(parents=True)
    names = {"W": str(case_dir), "M": str(paths["M"]), "M1": str(paths["M1"])}
    for key, name in (("S", "sst2"), ("R", "rte"), ("F", "fusion"), ("D", "data"), ("H", "hub_sst2")):
        shutil.copytree(paths[key], case_dir / name, symlinks=True)
        names[key] = str(case_dir / name)
    (case_dir / "notes.txt").write_text("a user's notes\n")
    (case_dir / "thesis").mkdir()
    (case_dir / "thesis" / "chapter1.tex").write_text("\\chapter{One}\n")
    return names


def run_case(case: Case, paths: dict[str, Path], case_dir: Path) -> Outcome:
    names = workspace(paths, case_dir)
    if case.prepare is not None:
        case.prepare(case_dir)
    argv = [arg.format(**names) for arg in case.argv]
    allowed = tuple(case_dir / o for o in case.outputs) if case.expect != "refuse" else ()
    before = digest_tree(case_dir, allowed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT / "src"), "ADAPTER_FUSION_DATA_DIR": str(case_dir / "no-data-here")}  # fmt: skip
    env.pop("HF_TOKEN", None)
    command = [sys.executable, "-m", "adapter_fusion.cli", *argv]
    start = time.time()
    process = subprocess.Popen(
        command, cwd=case_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    out: list[str] = []
    err: list[str] = []
    err_reader = threading.Thread(target=lambda: err.append(process.stderr.read()), daemon=True)  # type: ignore
    err_reader.start()
    if case.interrupt_after is not None:
        for line in process.stdout:
            out.append(line)
            if line.startswith(case.interrupt_after):
                time.sleep(2)
                process.send_signal(signal.SIGINT)
                break
    out.append(process.stdout.read())
    try:
        process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    err_reader.join(timeout=30)
    after = digest_tree(case_dir, allowed)
    changed = sorted(
        [f"{p} (changed)" for p in before if p in after and before[p] != after[p]]
        + [f"{p} (deleted)" for p in before if p not in after]
        + [f"{p} (new)" for p in after if p not in before]
    )
    outcome = Outcome(case, process.returncode, "".join(err), "".join(out), changed, time.time() - start)
    outcome.argv = argv  # type: ignore[attr-defined]
    return outcome


# --------------------------------------------------------------------------- the cases
def write(relative: str, text: str | bytes) -> Callable[[Path], None]:
    def prepare(w: Path) -> None:
        path = w / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return prepare


def link(relative: str, target: str) -> Callable[[Path], None]:
    return lambda w: (w / relative).symlink_to(w / target)


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def prepare(w: Path) -> None:
        for step in steps:
            step(w)

    return prepare


def replace_by_dir(relative: str) -> Callable[[Path], None]:
    def prepare(w: Path) -> None:
        (w / relative).unlink()
        (w / relative).mkdir()

    return prepare


def nan_weights(w: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    path = w / "sst2" / "adapter.safetensors"
    tensors = load_file(path)
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, path, metadata={"format": "pt"})
    rehash(w / "sst2")


def manifest_outside(w: Path) -> None:
    manifest = json.loads((w / "sst2" / "manifest.json").read_text())
    manifest["files"]["../rte/adapter.safetensors"] = manifest["files"]["adapter.safetensors"]
    (w / "sst2" / "manifest.json").write_text(json.dumps(manifest))


def hostile_name(w: Path) -> None:
    edit_json(w / "sst2" / "adapter_config.json", name="../thesis")
    rehash(w / "sst2")


def corrupt_model(w: Path) -> None:
    shutil.copytree(PATHS["M"], w / "badmodel")
    (w / "badmodel" / "config.json").write_text("{not json")


def unlabelled_test_split(w: Path) -> None:
    rows = ["index\tsentence1\tsentence2"] + [f"{i}\ta man walks {i}\ta man sleeps" for i in range(6)]
    (w / "data" / "glue" / "RTE" / "test.tsv").write_text("\n".join(rows) + "\n")
    sst = ["index\tsentence"] + [f"{i}\tgood film {i}" for i in range(6)]
    (w / "data" / "glue" / "SST-2" / "test.tsv").write_text("\n".join(sst) + "\n")


def sst2_rows(rows: list[str], header: str = "sentence\tlabel") -> Callable[[Path], None]:
    return write("data/glue/SST-2/train.tsv", "\n".join([header, *rows]) + "\n")


def cases() -> list[Case]:
    """Fresh variants, none of them in tests/test_fuzz_*.py or tests/test_artefact_safety*.py."""
    ta = ["train-adapter", "--task", "sst2", "--model", "{M}", "--data-dir", "{D}", "--bottleneck-size", "4", *TRAIN]
    tf = ["train-fusion", "--task", "sst2", "--model", "{M}", "--data-dir", "{D}", *TRAIN]
    tm = ["train-multitask", "--model", "{M}", "--data-dir", "{D}", "--bottleneck-size", "4", *TRAIN]
    ext = ["extend-fusion", "--model", "{M}", "--data-dir", "{D}", *TRAIN]
    ev = ["evaluate", "--data-dir", "{D}"]
    out = ["--output-dir", "{W}/runs"]
    D, S, T = "data-loss", "silent-wrong", "traceback"
    return [
        # ---------------------------------------------------------------- data loss: where outputs go
        Case(D, "train-adapter --output . (the working directory, full of the user's files)",
             [*ta, "--output", ".", *out]),
        Case(D, "train-adapter --output a symlink to a saved adapter, no --overwrite",
             [*ta, "--output", "{W}/link", *out], prepare=link("link", "sst2")),
        Case(D, "train-adapter --output a symlink to the user's thesis folder, --overwrite",
             [*ta, "--output", "{W}/link", "--overwrite", *out], prepare=link("link", "thesis")),
        Case(D, "train-adapter --output a saved fusion, --overwrite (other kind)",
             [*ta, "--output", "{F}", "--overwrite", *out]),
        Case(D, "train-adapter --output a directory named with unicode and spaces (new path)",
             [*ta, "--output", "{W}/mé adapter ✓", *out], expect="accept", outputs=("mé adapter ✓", "runs")),
        Case(D, "train-adapter --output-dir a saved adapter", [*ta, "--output", "{W}/new", "--output-dir", "{S}"]),
        Case(D, "train-fusion --output inside an input adapter",
             [*tf, "--adapters", "{S}", "{R}", "--output", "{S}/fusion", *out]),
        Case(D, "train-fusion --output an input adapter, --overwrite",
             [*tf, "--adapters", "{S}", "{R}", "--output", "{R}", "--overwrite", *out]),
        Case(D, "train-fusion --output the folder holding the inputs, --overwrite",
             [*tf, "--adapters", "{S}", "{R}", "--output", "{W}", "--overwrite", *out]),
        Case(D, "train-multitask --output a saved adapter (as the container)",
             [*tm, "--tasks", "sst2", "rte", "--output", "{S}", *out]),
        Case(D, "train-multitask --output a regular file",
             [*tm, "--tasks", "sst2", "--output", "{W}/notes.txt", *out]),
        Case(D, "extend-fusion --output the input fusion itself",
             [*ext, "--fusion", "{F}", "--adapter", "{R}", "--task", "rte", "--output", "{F}", *out]),
        Case(D, "extend-fusion --output the user's thesis folder",
             [*ext, "--fusion", "{F}", "--adapter", "{R}", "--task", "rte", "--output", "{W}/thesis", *out]),
        Case(D, "export adapterhub onto the user's thesis folder",
             ["export", "--format", "adapterhub", "{S}", "{W}/thesis"]),
        Case(D, "export adapterhub onto its own input", ["export", "--format", "adapterhub", "{S}", "{S}"]),
        Case(D, "export onnx onto the user's notes file", ["export", "--format", "onnx", "{S}", "{W}/notes.txt"]),
        Case(D, "import adapterhub onto an existing saved adapter",
             ["import", "--format", "adapterhub", "--model", "{M}", "{H}", "{R}"]),
        Case(D, "evaluate --metrics-file the adapter's own adapter_config.json",
             [*ev, "--adapter", "{S}", "--metrics-file", "{S}/adapter_config.json"]),
        Case(D, "train-adapter --metrics-file over a saved adapter's manifest.json",
             [*ta, "--output", "{W}/new", *out, "--metrics-file", "{S}/manifest.json"]),
        Case(D, "train-adapter --metrics-file inside its own new --output",
             [*ta, "--output", "{W}/new", *out, "--metrics-file", "{W}/new/metrics.json"]),
        Case(D, "Ctrl-C during train-fusion --overwrite of an existing fusion (old one must survive)",
             [*tf, "--adapters", "{S}", "{R}", "--output", "{F}", "--overwrite", *out, "--max-steps", "100000",
              "--eval-steps", "100000"], expect="interrupt", interrupt_after="attention fusion of", outputs=("runs",)),
        # ---------------------------------------------------------------- silently wrong
        Case(S, "train-fusion --adapters the same adapter twice", [*tf, "--adapters", "{S}", "{S}", "--output",
             "{W}/f", *out]),
        Case(S, "train-fusion over two copies of one adapter (same name)",
             [*tf, "--adapters", "{S}", "{W}/copy", "--output", "{W}/f", *out],
             prepare=lambda w: shutil.copytree(w / "sst2", w / "copy")),
        Case(S, "train-fusion over one adapter", [*tf, "--adapters", "{S}", "--output", "{W}/f", *out],
             expect="either", outputs=("f", "runs")),
        Case(S, "predict with a fusion on another base model (--model)",
             ["predict", "--adapter", "{F}", "--model", "{M1}", "a fine film"]),
        Case(S, "evaluate --split test on unlabelled GLUE test data (rte)",
             [*ev, "--adapter", "{R}", "--split", "test"], prepare=unlabelled_test_split),
        Case(S, "evaluate --split tset (typo)", [*ev, "--adapter", "{S}", "--split", "tset"]),
        Case(S, "evaluate an SST-2 adapter on RTE without --head", [*ev, "--adapter", "{S}", "--task", "rte"]),
        Case(S, "evaluate an adapter whose weights are NaN (manifest re-hashed)", [*ev, "--adapter", "{S}"],
             prepare=nan_weights),
        Case(S, "manifest lists a file outside the artefact", ["predict", "--adapter", "{S}", "fine"],
             prepare=manifest_outside),
        Case(S, "adapter_config.json name '../thesis', manifest re-hashed", ["predict", "--adapter", "{S}", "fine"],
             prepare=hostile_name),
        Case(S, "adapter weights replaced by a symlink to another adapter's",
             ["predict", "--adapter", "{S}", "fine"],
             prepare=both(lambda w: (w / "sst2" / "adapter.safetensors").unlink(),
                          link("sst2/adapter.safetensors", "rte/adapter.safetensors"))),
        Case(S, "predict: JSON line with text_pair for a single-sentence adapter",
             ["predict", "--adapter", "{S}", "--input", "{W}/in.jsonl"],
             prepare=write("in.jsonl", '{"text": "fine", "text_pair": "film"}\n')),
        Case(S, "predict --task rte with an SST-2 adapter", ["predict", "--adapter", "{S}", "--task", "rte", "fine"]),
        Case(S, "config: a list where a scalar goes (weight_decay: [0.1, 0.2])", [*ta, "--output", "{W}/a", *out,
             "--config", "{W}/c.yaml"], prepare=write("c.yaml", "weight_decay: [0.1, 0.2]\n")),
        Case(S, "config: a boolean where an int goes (bottleneck_size: true)",
             ["train-adapter", "--task", "sst2", "--model", "{M}", "--data-dir", "{D}", *TRAIN, "--output", "{W}/a",
              *out, "--config", "{W}/c.yaml"], prepare=write("c.yaml", "bottleneck_size: true\n")),
        Case(S, "config: a string where an int goes (seed: 1e3, a string in YAML)",
             [*ta, "--output", "{W}/a", *out, "--config", "{W}/c.yaml"], prepare=write("c.yaml", "seed: 1e3\n")),
        Case(S, "config: the same key twice in YAML", [*ta, "--output", "{W}/a", *out, "--config", "{W}/c.yaml"],
             prepare=write("c.yaml", "scaling: 1.0\nscaling: 8.0\n")),
        Case(S, "config: the same key twice in JSON", [*ta, "--output", "{W}/a", *out, "--config", "{W}/c.json"],
             prepare=write("c.json", '{"scaling": 1.0, "scaling": 8.0}')),
        Case(S, "--layers -1 (negative index)", [*ta, "--output", "{W}/a", *out, "--layers", "-1"]),
        Case(S, "--eval-steps -3", [*ta, "--output", "{W}/a", *out, "--eval-steps", "-3"]),
        Case(S, "--learning-rate -0.1", [*ta, "--output", "{W}/a", *out, "--learning-rate", "-0.1"]),
        Case(S, "--adapter-kind lora with --reduction-factor (option of another kind)",
             [*ta[:-len(TRAIN) - 2], *TRAIN, "--adapter-kind", "lora", "--reduction-factor", "8", "--output",
              "{W}/a", *out]),
        Case(S, "train-multitask --tasks sst2 sst2 (duplicate)", [*tm, "--tasks", "sst2", "sst2", "--output",
             "{W}/mt", *out]),
        Case(S, "extend-fusion with an adapter already in the fusion",
             [*ext, "--fusion", "{F}", "--adapter", "{S}", "--task", "sst2", "--output", "{W}/f2", *out]),
        Case(S, "data: SST-2 label 7 (out of range)", [*ta, "--output", "{W}/a", *out],
             prepare=sst2_rows([f"good {i}\t{i % 2}" for i in range(8)] + ["odd one\t7"])),
        Case(S, "data: SST-2 label 'postive' (a misspelt label name)", [*ta, "--output", "{W}/a", *out],
             prepare=sst2_rows([f"good {i}\t{('negative', 'positive')[i % 2]}" for i in range(8)] + ["bad\tpostive"])),
        Case(S, "data: RTE row with an empty second sentence",
             ["train-adapter", "--task", "rte", "--model", "{M}", "--data-dir", "{D}", "--bottleneck-size", "4",
              *TRAIN, "--output", "{W}/a", *out],
             prepare=write("data/glue/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta man\t\tentailment\n"
                           "1\ta dog\ta cat\tnot_entailment\n")),
        # ---------------------------------------------------------------- raw tracebacks
        Case(T, "--config YAML indented with a tab", [*ta, "--output", "{W}/a", *out, "--config", "{W}/c.yaml"],
             prepare=write("c.yaml", "training:\n\tbatch_size: 4\n")),
        Case(T, "--config a YAML scalar", [*ta, "--output", "{W}/a", *out, "--config", "{W}/c.yaml"],
             prepare=write("c.yaml", "hello\n")),
        Case(T, "--model names a regular file", [*ta[:4], "{W}/notes.txt", *ta[5:], "--output", "{W}/a", *out]),
        Case(T, "--model names a saved adapter", [*ta[:4], "{S}", *ta[5:], "--output", "{W}/a", *out]),
        Case(T, "--model with a corrupt config.json",
             [*ta[:4], "{W}/badmodel", *ta[5:], "--output", "{W}/a", *out],
             prepare=corrupt_model),
        Case(T, "--max-seq-length 1000000", [*ta, "--output", "{W}/a", *out, "--max-seq-length", "1000000"]),
        Case(T, "--batch-size 10**20 (beyond int64)", [*ta, "--output", "{W}/a", *out, "--batch-size",
             "100000000000000000000"]),
        Case(T, "adapter_config.json replaced by a directory", ["predict", "--adapter", "{S}", "fine"],
             prepare=replace_by_dir("sst2/adapter_config.json")),
        Case(T, "manifest.json truncated to invalid JSON", ["predict", "--adapter", "{S}", "fine"],
             prepare=write("sst2/manifest.json", '{"format": "adapter-fus')),
        Case(T, "a fusion whose adapter subfolder was deleted", ["predict", "--adapter", "{F}", "fine"],
             prepare=lambda w: shutil.rmtree(next(p for p in (w / "fusion").iterdir() if p.is_dir()))),
        Case(T, "predict --adapter a regular file", ["predict", "--adapter", "{W}/notes.txt", "fine"]),
        Case(T, "predict --input undecodable bytes", ["predict", "--adapter", "{S}", "--input", "{W}/in.txt"],
             prepare=write("in.txt", b"\xff\xfe\x00bad\n")),
        Case(T, "predict a whitespace-only text", ["predict", "--adapter", "{S}", "   "]),
        Case(T, "predict a 100 kB text (valid: truncated)", ["predict", "--adapter", "{S}", "good " * 20000],
             expect="accept"),
        Case(T, "predict --pair given with --input", ["predict", "--adapter", "{R}", "--pair", "b", "--input",
             "{W}/in.txt"], prepare=write("in.txt", "a man walks\ta man moves\n")),
        Case(T, "evaluate --max-examples -1", [*ev, "--adapter", "{S}", "--max-examples", "-1"]),
        Case(T, "evaluate --metrics-file under a regular file", [*ev, "--adapter", "{S}", "--metrics-file",
             "{W}/notes.txt/m.json"]),
        Case(T, "import our own format as adapterhub", ["import", "--format", "adapterhub", "{S}", "{W}/imp"]),
        Case(T, "push-to-hub offline", ["push-to-hub", "{S}", "someone/sst2"]),
        Case(T, "push-to-hub an unknown bank adapter", ["push-to-hub", "bank:nope", "someone/x"]),
        Case(T, "analyze an adapter (not a fusion)", ["analyze", "{S}", "--data-dir", "{D}"]),
        Case(T, "train-multitask --tasks sst2 nosuchtask", [*tm, "--tasks", "sst2", "nosuchtask", "--output",
             "{W}/mt", *out]),
        Case(T, "extend-fusion without --adapter", [*ext, "--fusion", "{F}", "--task", "rte"]),
        Case(T, "extend-fusion --fusion names an adapter", [*ext, "--fusion", "{S}", "--adapter", "{R}", "--task",
             "rte", "--output", "{W}/f2", *out]),
        Case(T, "Ctrl-C during train-multitask", [*tm, "--tasks", "sst2", "rte", "--output", "{W}/mt", *out,
             "--max-steps", "100000", "--eval-steps", "100000"], expect="interrupt",
             interrupt_after="multi-task training", outputs=("runs",)),
    ]  # fmt: skip


# --------------------------------------------------------------------------- report
def shorten(text: str, limit: int = 160) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report(outcomes: list[Outcome], seconds: float) -> str:
    verdicts = [o.verdict() for o in outcomes]
    counts: Counter[tuple[str, str]] = Counter((o.case.harm, v) for o, (v, _) in zip(outcomes, verdicts))
    lines = [
        "# Fuzz campaign: fresh bad inputs against the CLI and its artefacts (issue 14)",
        "",
        f"Made by `python experiments/reliability/fuzz_campaign.py` ({len(outcomes)} cases, {seconds / 60:.1f} "
        "minutes on one core). Each case is a real `python -m adapter_fusion.cli` subprocess with "
        "`HF_HUB_OFFLINE=1` in its own temporary directory holding copies of a tiny SST-2 adapter, RTE adapter, "
        "their attention fusion and the data, plus a user's own files (`notes.txt`, `thesis/`). OK = the expected "
        "exit (2 for a refusal, 130 for Ctrl-C, 0 where the input is valid) with one stderr line (a library's "
        "progress bar is not counted) and no file changed outside the case's named output. Paths: `W` is the case's "
        f"directory, `TMP` the campaign's; `$TINY` stands for `{' '.join(TRAIN)}`.",
        "",
        "## Counts",
        "",
        "| class probed | cases | OK | data-loss | silent-wrong | traceback | wrong-exit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for harm in ("data-loss", "silent-wrong", "traceback"):
        total = sum(1 for o in outcomes if o.case.harm == harm)
        cells = [str(counts[(harm, v)]) for v in ("OK", "data-loss", "silent-wrong", "traceback", "wrong-exit")]
        lines.append(f"| {harm} | {total} | " + " | ".join(cells) + " |")
    all_cells = [str(sum(1 for v, _ in verdicts if v == name)) for name in
                 ("OK", "data-loss", "silent-wrong", "traceback", "wrong-exit")]  # fmt: skip
    lines += [f"| all | {len(outcomes)} | " + " | ".join(all_cells) + " |", "", "## Cases", "",
              "| # | class | case | command | expect | exit | first stderr line | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for index, (outcome, (verdict, reason)) in enumerate(zip(outcomes, verdicts), 1):
        command = " ".join(outcome.argv)  # type: ignore[attr-defined]
        command = command.replace(outcome.case_dir, "W").replace(str(PATHS["root"]), "TMP")  # type: ignore
        command = shorten(command.replace(" ".join(TRAIN), "$TINY").replace("\t", "\\t"), 300)
        first = outcome.first_line().replace(outcome.case_dir, "W").replace(str(PATHS["root"]), "TMP")  # type: ignore
        first = first.replace(str(ROOT), "<repo>")
        first = shorten(first, 200)
        shown = verdict if verdict == "OK" else f"**{verdict}**: {shorten(reason, 120)}"
        if PROGRESS.search(outcome.stderr) and outcome.code != 0:
            shown += " (a progress bar came first)"
        lines.append(f"| {index} | {outcome.case.harm} | {shorten(outcome.case.what, 100)} | `{command}` | "
                     f"{outcome.case.expect} | {outcome.code} | {first} | {shown} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose description contains this text")
    parser.add_argument("--output", default=str(RESULTS), help="markdown report to write")
    args = parser.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="fuzz_campaign_") as tmp:
        root = Path(tmp)
        paths = setup(root)
        PATHS.update(paths, root=root)
        chosen = [c for c in cases() if not args.only or args.only in c.what]
        outcomes = []
        for index, case in enumerate(chosen, 1):
            case_dir = root / "cases" / f"case{index:03d}"
            outcome = run_case(case, paths, case_dir)
            outcome.case_dir = str(case_dir)  # type: ignore[attr-defined]
            verdict, reason = outcome.verdict()
            first = outcome.first_line()
            print(f"[{index}/{len(chosen)}] {verdict:12s} exit {outcome.code} {outcome.seconds:4.1f}s "
                  f"{case.what} | {first[:150]} {reason}", flush=True)  # fmt: skip
            outcomes.append(outcome)
        text = report(outcomes, time.time() - start)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
