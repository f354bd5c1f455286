"""The AdapterFusion transfer study (issue 13): does fusing the bank's source adapters help a target task?

One resumable command; every (protocol, target, system, seed) run writes
``experiments/transfer/results/<protocol>/<target>__<system>__seed<seed>.json`` and a finished run is never redone;
``RESULTS.md`` is rewritten from those files after every run (cells without a file say "not run").

    OMP_NUM_THREADS=1 python experiments/transfer/study.py --protocol fewshot            # every few-shot cell
    OMP_NUM_THREADS=1 python experiments/transfer/study.py --protocol fewshot --targets cr mr --seeds 13
    python experiments/transfer/study.py --table-only                                     # rewrite RESULTS.md

Protocols:
- ``fewshot`` (LM-BFF, Gao et al. 2021): for each data seed (13, 21, 42, 87, 100), 16 examples per class are drawn from
  the target's train split for training and another 16 per class for model selection; the test set is the target's
  LM-BFF dev set (for RTE, not in LM-BFF, the GLUE dev set).
- ``full`` (the AdapterFusion paper's Table 1): the whole train split, model selection and report on the dev split
  (GLUE practice), seeds 1, 2, 3.

Systems: ``head`` (frozen encoder, trained head), ``st-a`` (a single-task adapter), ``full-ft`` (full fine-tuning),
``inter`` (intermediate-task transfer: the target's adapter starts from one bank source's trained weights, chosen
before any run by task family in ``INTERMEDIATE``, and is trained on the target with a fresh head), ``attention`` /
``weighted`` / ``gating`` (fusion of the bank's sources allowed for the target plus the target's own ST-A adapter of
the same seed, the adapters frozen, a fresh head: nothing starts from the ST-A's trained head, so no system gets extra
steps; ``weighted-lr100``: ``weighted`` with its mixing weights at 100 times the fusion's rate, see
``FUSION_SYSTEMS``). ``attention-v2`` reads bank v2 instead of v1; ``attention-family`` reads only bank v2's adapters
of the target's task family (``FAMILIES``, fixed before any run); ``family-no-own``, ``family-lr10``, ``family-joint``
and ``family-src-head`` are its diagnostics (see ``FAMILY_SYSTEMS``). ``DEV_SELECTIONS`` (few-shot only) report, per
seed, the listed system with the best dev score. Sources are leave-one-out (``EXCLUDED``): a target never reads an
adapter trained on its own dataset or on a dataset built from its examples.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner import ROOT  # noqa: E402

from adapter_fusion import AdapterConfig, AdapterTrainer, FusionConfig, FusionTrainer, TrainingConfig  # noqa: E402
from adapter_fusion.bank import PREFIX, list_bank, read_card, resolve_artefact  # noqa: E402
from adapter_fusion.evaluation.fusion_weights import collect_fusion_weights  # noqa: E402
from adapter_fusion.io import atomic_write_text  # noqa: E402
from adapter_fusion.models import fusable_adapter_config, load_adapter  # noqa: E402
from adapter_fusion.tasks import get_task, get_task_type, load_task_split  # noqa: E402
from adapter_fusion.tasks.fewshot import few_shot_splits  # noqa: E402
from adapter_fusion.tasks.sentence.readers import JsonReader  # noqa: E402
from adapter_fusion.training.fusion_setup import init_head_from_source  # noqa: E402

HERE = ROOT / "experiments" / "transfer"
RESULTS = HERE / "results"
ADAPTERS = ROOT / "runs" / "transfer-study"
"""The ST-A adapters the study trains (git-ignored), kept so each seed's fusions reuse their target's adapter."""
FEWSHOT_TARGETS = ("mr", "cr", "mpqa", "subj", "sst5", "trec", "snli", "qnli", "rte")
FULL_TARGETS = ("rte", "mrpc", "cola", "stsb", "boolq")
SEEDS = {"fewshot": (13, 21, 42, 87, 100), "full": (1, 2, 3)}
SHOTS = 16
BANK_VERSION = "v1"
"""The bank version this study's results were made with: its sources load as ``bank:NAME@v1``."""
FUSION_SYSTEMS: dict[str, tuple[str, str]] = {
    "attention": ("attention", BANK_VERSION),
    "weighted": ("weighted", BANK_VERSION),
    "weighted-lr100": ("weighted", BANK_VERSION),
    "gating": ("gating", BANK_VERSION),
    "attention-v2": ("attention", "v2"),
}
"""Fusion system -> (fusion method, bank version its sources come from). ``attention-v2`` reads bank v2 (trained on a
GPU: stronger sentiment/NLI/QNLI adapters and six more tasks) with the same own ST-A adapter. ``weighted`` trains its
mixing weights (one logit per adapter and layer) at the fusion's rate, 5e-4: Adam moves each by at most about that
per step, and in every one of its runs each weight ended between 0.90 and 1.25 times uniform (1/N; FINDINGS.md,
section 3g): close to a plain average of the adapters. ``weighted-lr100`` trains them at 100 times that rate, the
library's default since (``TrainingConfig.fusion_weight_learning_rate``)."""
SENTIMENT = ("sst2", "imdb")
SENTENCE_PAIR = ("mnli_plus", "qnli_squad", "boolq", "qqp")
SINGLE_SENTENCE = ("sst2", "imdb", "ag_news", "trec")
FAMILIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("mr", "cr", "mpqa", "subj", "sst5"), SENTIMENT),
    "trec": ("ag_news", "qqp", "squad"),  # other question / short-text classifiers (trec itself is left out)
    **dict.fromkeys(("snli", "qnli", "rte", "mrpc", "stsb", "boolq"), SENTENCE_PAIR),
    "cola": SINGLE_SENTENCE,
}
"""Target -> the bank v2 adapters of its task family, fixed before any run (``attention-family`` reads only these,
less the left-out ones): the evidence of the ``attention-v2`` runs is that ten sources dilute the few that matter
(CR with sst2 + imdb 0.876, with all ten 0.815) and that the last layer collapses onto an unrelated one."""
FAMILY_SYSTEMS = ("attention-family", "family-no-own", "family-lr10", "family-joint", "family-src-head")
"""Diagnostics of ``attention-family``: ``family-no-own`` leaves the target's own ST-A adapter out of the fusion (the
v1 fusions' last layer put 0.98-1.00 of its weight on it for SST-5, TREC and SNLI); ``family-lr10`` trains the fusion
and the fresh head with ten times the learning rates (80 steps at 5e-4 may leave a fresh head and fusion near their
start: the frozen-encoder head gets 51.0 on MR, where the sst2 source's own head scores 0.917 on 48 MR examples);
``family-joint`` trains the adapters with the fusion (the library's joint strategy, adapters at the ``inter`` rate),
since ``inter`` (one source adapter trained on) beats the frozen family fusion on MR, SST-5, SNLI, QNLI and RTE.
``family-src-head`` is ``family-no-own`` whose fresh head starts from the ``INTERMEDIATE`` source's trained head
where its labels carry over (``SOURCE_HEAD_LABELS``), not from random weights: 32 examples train a head poorly."""
OWNLESS = ("family-no-own", "family-src-head")
"""Fusion systems that leave the target's own ST-A adapter out."""
SOURCE_HEAD_LABELS: dict[str, dict[str, tuple[str, ...]] | None] = {
    **dict.fromkeys(("mr", "cr", "mpqa", "snli"), None),  # the source has the same label names
    "sst5": {"very negative": ("negative",), "negative": ("negative",), "neutral": ("negative", "positive"),
             "positive": ("positive",), "very positive": ("positive",)},
    **dict.fromkeys(("qnli", "rte"), {"entailment": ("entailment",), "not_entailment": ("neutral", "contradiction")}),
}
"""Target -> how its labels read the ``INTERMEDIATE`` source head's labels (None: by the same name; each target row
is the mean of the listed source rows). Targets not listed (Subj, TREC: no label carries over) keep a fresh head."""
FUSION_SYSTEMS.update(dict.fromkeys(FAMILY_SYSTEMS, ("attention", "v2")))
FUSIONS = tuple(FUSION_SYSTEMS)
SYSTEMS = ("head", "st-a", "full-ft", "inter", *FUSIONS)
DEV_SELECTIONS: dict[str, tuple[str, ...]] = {
    "select-fusion": ("attention-family", "family-no-own"),
    "select-any": ("st-a", "attention-family", "family-no-own", "inter"),
}
"""Few-shot only: per target and seed, the candidate with the best score on the 16-per-class dev split (the protocol's
model-selection data; ties go to the first listed) is the one reported. ``select-fusion`` chooses between the two
family fusions, ``select-any`` among everything a user would train for a target. Derived from the runs above, no run
of its own. Not for the full-data protocol, whose dev split is its test set."""
INTERMEDIATE_VERSION = "v2"
"""The bank the ``inter`` column starts from (its strongest adapters)."""
INTERMEDIATE: dict[str, tuple[str, str]] = {
    "mr": ("imdb", "movie-review sentiment (sst2 is left out for MR)"),
    "cr": ("sst2", "sentiment"),
    "mpqa": ("sst2", "opinion polarity of short phrases"),
    "subj": ("sst2", "single sentences from reviews"),
    "sst5": ("imdb", "sentiment (sst2 is left out for SST-5)"),
    "trec": ("ag_news", "short-text topic classification (the trec source is the target's own dataset)"),
    "snli": ("mnli_plus", "NLI"),
    "qnli": ("mnli_plus", "sentence-pair inference (qnli_squad and squad are left out for QNLI)"),
    "rte": ("mnli_plus", "NLI (MNLI is the classic intermediate task for RTE, Phang et al. 2018)"),
    "mrpc": ("qqp", "paraphrase"),
    "cola": ("sst2", "single-sentence classification"),
    "stsb": ("mnli_plus", "sentence-pair semantics (MNLI helps STS-B in Phang et al. 2018)"),
    "boolq": ("mnli_plus", "inference over a passage (the BoolQ paper's best transfer source)"),
}
"""Target -> (the bank source its ``inter`` adapter starts from, why): fixed by task family before any run, never
chosen on test scores."""

# target -> bank adapters it may not read, and why
EXCLUDED: dict[str, tuple[tuple[str, ...], str]] = {
    "mr": (("sst2",), "SST was built from MR's Rotten Tomatoes sentences"),
    "sst5": (("sst2",), "SST-5 and SST-2 label the same SST sentences"),
    "qnli": (("qnli_squad", "squad"), "QNLI was built from SQuAD"),
    "snli": ((), "mnli_plus holds no SNLI pair (its JOCI part reuses some SNLI premises with new hypotheses)"),
    "boolq": (("boolq",), "the target's own dataset"),
    "rte": ((), "no RTE or Add-One RTE data in any source"),
}
LMBFF_TEST_FILES = {"qnli": "lmbff_pcp/glue_pretrain/QNLI/dev.json"}
"""Targets whose registered validation split is not their LM-BFF dev set (QNLI's is the official GLUE dev set)."""

BUDGETS: dict[str, dict[str, Any]] = {
    "fewshot": dict(num_train_epochs=20, batch_size=8, eval_batch_size=64, warmup_ratio=0.06),
    "full": dict(num_train_epochs=3, batch_size=32, eval_batch_size=128, warmup_ratio=0.06),
}
LEARNING_RATES: dict[str, dict[str, float]] = {
    "head": dict(adapter_learning_rate=1e-3),
    "st-a": dict(adapter_learning_rate=1e-3),
    "inter": dict(adapter_learning_rate=1e-3),
    "full-ft": dict(base_learning_rate=5e-5, head_learning_rate=1e-3),
    "fusion": dict(fusion_learning_rate=5e-4, head_learning_rate=1e-3),
    "weighted": dict(fusion_learning_rate=5e-4, head_learning_rate=1e-3, fusion_weight_learning_rate=5e-4),
    "weighted-lr100": dict(fusion_learning_rate=5e-4, head_learning_rate=1e-3, fusion_weight_learning_rate=5e-2),
    "family-lr10": dict(fusion_learning_rate=5e-3, head_learning_rate=1e-2),
    "family-joint": dict(fusion_learning_rate=5e-4, head_learning_rate=1e-3, adapter_learning_rate=1e-3),
}


def rates_for(system: str) -> dict[str, float]:
    """The learning rates of ``system``: its own entry, else the fusions' (a fusion) or none."""
    return LEARNING_RATES.get(system, LEARNING_RATES["fusion"] if system in FUSIONS else {})


def sources_for(target: str, version: str = BANK_VERSION, family: bool = False) -> list[str]:
    """The adapters of bank ``version`` a target's fusion reads: every shipped one but the excluded (``family``: only
    those of the target's task family, ``FAMILIES``)."""
    excluded = set(EXCLUDED.get(target, ((), ""))[0]) | {target}
    return [
        name for name in list_bank(version)
        if name not in excluded and read_card(f"{name}@{version}")["task"] != target
        and (not family or name in FAMILIES[target])
    ]


def bank_references(names: list[str], version: str = BANK_VERSION) -> list[str]:
    """``bank:NAME@<version>`` of each name."""
    return [f"{PREFIX}{name}@{version}" for name in names]


def st_a_config(target: str) -> AdapterConfig:
    """The target's own adapter (ST-A), alone and inside the fusions: it reads what the bank's adapters it is fused
    with read (``fusable_adapter_config``; the v1 bank reads the feed-forward output itself)."""
    return fusable_adapter_config(bank_references(sources_for(target)))


def test_split(target: str, protocol: str, data_dir: str) -> Any:
    """The split a protocol reports: the LM-BFF dev set (few-shot) or the dev split (full data)."""
    if protocol == "fewshot" and target in LMBFF_TEST_FILES:
        spec = get_task(target)
        raw = JsonReader()([Path(data_dir) / LMBFF_TEST_FILES[target]])
        return get_task_type(spec).to_dataset(spec, raw, None, LMBFF_TEST_FILES[target])
    return load_task_split(target, "validation", data_dir)


def training_config(protocol: str, system: str, seed: int, output_dir: str) -> TrainingConfig:
    rates = rates_for(system)
    return TrainingConfig(
        output_dir=output_dir,
        seed=seed,
        save_total_limit=1,
        disable_tqdm=True,
        logging_steps=50,
        full_finetune=system == "full-ft",
        **BUDGETS[protocol],
        **rates,
    )


def run_one(protocol: str, target: str, system: str, seed: int, data_dir: str, scratch: Path) -> dict[str, Any]:
    """Train ``system`` on ``target`` with ``seed`` and score it on the protocol's test split."""
    if protocol == "fewshot":
        train, dev = few_shot_splits(target, SHOTS, seed, data_dir)
    else:
        train, dev = load_task_split(target, "train", data_dir), load_task_split(target, "validation", data_dir)
    test = test_split(target, protocol, data_dir)
    config = training_config(protocol, system, seed, str(scratch / f"{target}-{system}-{seed}"))
    sources: list[str] = []
    head_from, dev_at_start = None, None  # family-src-head: the source head it starts from, its dev score then
    began = time.monotonic()
    adapter_dir = ADAPTERS / protocol / f"{target}-st-a-seed{seed}"
    if system in FUSIONS:
        if system not in OWNLESS and not adapter_dir.is_dir():  # the target's own adapter joins the fusion
            single = AdapterTrainer(
                target,
                adapter_config=st_a_config(target),
                training_config=training_config(protocol, "st-a", seed, str(scratch / "st-a-for-fusion")),
                data_dir=data_dir,
            )
            single.train(train, dev)
            single.save_adapter(adapter_dir)
        method, version = FUSION_SYSTEMS[system]
        sources = sources_for(target, version, family=system in FAMILY_SYSTEMS)
        trainer: Any = FusionTrainer(
            target,
            FusionConfig(fusion_method=method, freeze_adapters_during_fusion=system != "family-joint"),
            training_config=config,
            data_dir=data_dir,
            init_head_from_adapter=False,
        )
        own = [] if system in OWNLESS else [str(adapter_dir)]
        trainer.setup_model(bank_references(sources, version) + own)
        if system == "family-src-head" and target in SOURCE_HEAD_LABELS:
            head_from = INTERMEDIATE[target][0]
            source = resolve_artefact(bank_references([head_from], INTERMEDIATE_VERSION)[0])
            init_head_from_source(trainer.model, trainer.head_name, source, SOURCE_HEAD_LABELS[target])
            dev_at_start = trainer.evaluate(dev)
        trainer.train_fusion(train, dev)
    else:
        trainer = AdapterTrainer(target, adapter_config=st_a_config(target), training_config=config, data_dir=data_dir)
        if system in ("head", "inter"):
            trainer.model.adapters.remove_adapter(trainer.adapter_name)
        if system == "inter":  # the source's adapter weights (not its head) under the target's name, trainable
            sources = [INTERMEDIATE[target][0]]
            load_adapter(
                trainer.model, bank_references(sources, INTERMEDIATE_VERSION)[0], trainer.adapter_name, load_head=False
            )
            trainer.model.train_adapter(trainer.adapter_name)
        trainer.train(train, dev)
        if system == "st-a" and not adapter_dir.is_dir():  # a fusion run may have trained it already (same seed)
            trainer.save_adapter(adapter_dir)
    seconds = time.monotonic() - began
    shutil.rmtree(config.output_dir, ignore_errors=True)  # checkpoints of this run (full fine-tuning: 90 MB each)
    weights = None
    if system in FUSIONS:  # where the fusion looks, on the test set: mean weight per fused point and adapter
        weights = collect_fusion_weights(
            trainer.model, trainer.tokenizer, trainer.task, test, head=trainer.head_name, keep_examples=0
        ).to_dict()
    return {
        "fusion_weights": weights,
        "protocol": protocol,
        "target": target,
        "system": system,
        "seed": seed,
        "sources": sources,
        "train_examples": len(train),
        "dev_examples": len(dev),
        "test_examples": len(test),
        "dev": {k: v for k, v in trainer.metrics.items() if isinstance(v, float)},
        "test": trainer.evaluate(test),
        "global_step": trainer.metrics.get("global_step"),
        "trainable_parameters": trainer.metrics.get("trainable_parameters"),
        "wall_seconds": round(seconds, 1),
        "budget": {**BUDGETS[protocol], **rates_for(system)},
        **({"head_from": head_from, "dev_at_start": dev_at_start} if system == "family-src-head" else {}),
    }


def result_path(protocol: str, target: str, system: str, seed: int) -> Path:
    return RESULTS / protocol / f"{target}__{system}__seed{seed}.json"


def main() -> int:
    from table import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("fewshot", "full"), default="fewshot")
    parser.add_argument("--targets", nargs="+")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--table-only", action="store_true", help="rewrite RESULTS.md from the result files")
    args = parser.parse_args()
    if args.table_only:
        print(write_results())
        return 0
    targets = args.targets or list(FEWSHOT_TARGETS if args.protocol == "fewshot" else FULL_TARGETS)
    seeds = args.seeds or list(SEEDS[args.protocol])
    command = "python experiments/transfer/study.py " + shlex.join(sys.argv[1:]).replace(args.data_dir, "DATA")
    with tempfile.TemporaryDirectory(prefix="transfer-study-") as scratch:
        for seed in seeds:  # seed-major: every target gets a first seed before any gets a second
            for target in targets:
                for system in args.systems:
                    out = result_path(args.protocol, target, system, seed)
                    if out.is_file():
                        continue
                    record = run_one(args.protocol, target, system, seed, args.data_dir, Path(scratch))
                    record["command"] = command
                    atomic_write_text(out, json.dumps(record, indent=2, sort_keys=True) + "\n")  # no half files
                    main_metric = get_task(target).main_metric
                    print(
                        f"# {target} {system} seed {seed}: test {main_metric} "
                        f"{record['test'][main_metric]:.4f} ({record['wall_seconds']:.0f} s)",
                        flush=True,
                    )
                    write_results()
    return 0


if __name__ == "__main__":
    sys.exit(main())
