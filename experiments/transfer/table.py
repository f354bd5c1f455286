"""Write ``experiments/transfer/RESULTS.md`` from the bank's cards and the study's result files (every cell is a
measured file; a missing one says "not run")."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from bank import BANK_VERSIONS
from study import (
    DEV_SELECTIONS,
    EXCLUDED,
    FEWSHOT_TARGETS,
    FULL_TARGETS,
    FUSION_SYSTEMS,
    FUSIONS,
    HERE,
    INTERMEDIATE,
    RESULTS,
    SEEDS,
    SOURCE_HEAD_LABELS,
    SYSTEMS,
)

from adapter_fusion.bank import bank_versions, list_bank, read_card
from adapter_fusion.io import atomic_write_text
from adapter_fusion.tasks import get_task

OUT = HERE / "RESULTS.md"
FIGURES = HERE / "figures"
OWN = "own ST-A"
PROFILE_OF_VERSION = {version: profile for profile, version in BANK_VERSIONS.items()}
Runs = dict[tuple[str, str], dict[int, dict]]
"""A protocol's result records: ``{(target, system): {seed: record}}`` (``load``)."""
GOALS = {"sst2": 0.89, "imdb": 0.88, "mnli_plus": 0.68, "qnli_squad": 0.82, "boolq": 0.68, "ag_news": 0.90,
         "squad": 0.68}
"""Issue 13's dev goals on the bundled MiniLM (SQuAD: F1 0.68, and exact match 0.55)."""


def load(protocol: str) -> Runs:
    runs: Runs = {}
    for path in sorted((RESULTS / protocol).glob("*.json")):
        record = json.loads(path.read_text())
        runs.setdefault((record["target"], record["system"]), {})[record["seed"]] = record
    return runs


def score(record: dict) -> float:
    return record["test"][get_task(record["target"]).main_metric]


def cell(records: dict[int, dict]) -> str:
    if not records:
        return "not run"
    values = [score(r) for r in records.values()]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f} (n={len(values)})"


def bank_section(version: str) -> list[str]:
    readers = [system for system, (_, v) in FUSION_SYSTEMS.items() if v == version]
    use = f"the study's {', '.join(readers)} columns read it" if readers else "the study does not read it"
    lines = [
        f"## Bank {version} (`adapter_fusion/bank/{version}`, `bank:NAME@{version}`; {use})",
        "",
        f"Dev scores measured on the shipped files (`adapter-fusion evaluate --adapter bank:NAME@{version}` prints "
        "them).",
        "",
        "| adapter | task | dev split (n) | dev score | goal | steps | epochs | minutes | trained on | recipe |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in list_bank(version):
        card = read_card(f"{name}@{version}")
        dev, training = card["dev"], card["training"]
        metric = get_task(card["task"]).main_metric
        goal = GOALS.get(name)
        extra = f", {dev['exact_match']:.4f} exact_match" if "exact_match" in dev else ""
        examples = f"{dev['examples']} of {dev['subset_of']}" if "subset_of" in dev else dev["examples"]
        lines.append(
            f"| {name} | {card['task']} | {dev['split']} ({examples}) | {dev[metric]:.4f} {metric}{extra} | "
            f"{goal if goal else '-'} | {training['global_step']} | {training['epoch']:.2f} | "
            f"{training['train_seconds'] / 60:.1f} | {card.get('trained_on', '-')} | {card['recipe']} |"
        )
    return lines + [
        "",
        f"Commands: each card (`adapter_fusion/bank/{version}/NAME.md`) lists the command that trained it; "
        f"`python experiments/transfer/bank.py --profile {PROFILE_OF_VERSION[version]}` reruns it "
        "(resumable).",
        "",
    ]


def study_section(protocol: str, targets: tuple[str, ...], runs: Runs) -> list[str]:
    if not runs:
        return [f"## {protocol}: no runs yet", ""]
    title = {
        "fewshot": "Few-shot targets (16 per class, LM-BFF protocol)",
        "full": "Full-data targets (the paper's Table 1 protocol)",
    }[protocol]
    lines = [
        f"## {title}",
        "",
        "Test score (main metric, x100): mean ± standard deviation over seeds "
        f"{', '.join(map(str, SEEDS[protocol]))} (n = seeds run).",
        "",
        "| target | " + " | ".join(SYSTEMS) + " |",
        "|---|" + "---|" * len(SYSTEMS),
    ]
    for target in targets:
        lines.append(f"| {target} | " + " | ".join(cell(runs.get((target, s), {})) for s in SYSTEMS) + " |")
    compared = [system for system in SYSTEMS if system != "st-a"]
    lines += [
        "",
        "Paired by seed, each system minus ST-A (test, x100; only seeds where both ran); the last row averages the "
        "targets' mean differences (over the targets where the system ran, k of them):",
        "",
        "| target | " + " | ".join(compared) + " |",
        "|---|" + "---|" * len(compared),
    ]
    per_target: dict[str, dict[str, float]] = {system: {} for system in compared}
    for target in targets:
        row = []
        for system in compared:
            diffs = paired_diffs(runs, target, system, "st-a")
            if not diffs:
                row.append("not run")
                continue
            per_target[system][target] = statistics.mean(diffs)
            wins = sum(d > 0 for d in diffs)
            row.append(f"{statistics.mean(diffs):+.1f} ({wins}/{len(diffs)} seeds better)")
        lines.append(f"| {target} | " + " | ".join(row) + " |")
    lines.append(mean_row(list(means.values()) for means in per_target.values()))
    lines += goals_section(protocol, targets, runs, per_target)
    lines += ["", "Sources each target's fusion read (plus the target's own ST-A adapter of the same seed):", ""]
    for target in targets:
        why = EXCLUDED.get(target, ((), ""))
        left_out = f"; left out: {', '.join(why[0])} ({why[1]})" if why[0] else ""
        readers: dict[tuple[str, ...], list[str]] = {}  # the sources a run read -> the systems that read them
        for system in FUSIONS:
            fused = next(iter(runs.get((target, system), {}).values()), None)
            if fused:
                readers.setdefault(tuple(fused["sources"]), []).append(system)
        for read, systems in readers.items():
            version = FUSION_SYSTEMS[systems[0]][1]
            lines.append(f"- {target} ({', '.join(systems)}; bank {version}): {', '.join(read)}{left_out}")
        if not readers:
            lines.append(f"- {target}: no fusion run yet{left_out}")
        started = next(iter(runs.get((target, "family-src-head"), {}).values()), None)
        if started:
            mapped = SOURCE_HEAD_LABELS.get(target)
            how = "labels of the same name" if mapped is None else "; ".join(
                f"{label} <- {' + '.join(rows)}" for label, rows in mapped.items())  # fmt: skip
            lines.append(
                f"- {target} (family-src-head): head starts from {started['head_from']}'s head ({how})"
                if started.get("head_from") else f"- {target} (family-src-head): fresh head (no source label fits)"
            )
        inter = next(iter(runs.get((target, "inter"), {}).values()), None)
        if inter:
            lines.append(f"- {target} (inter): starts from {inter['sources'][0]} ({INTERMEDIATE[target][1]})")
    lines += [
        "",
        "Budget and wall time per system (the budget each run recorded; wall time on 2 shared CPU cores, one thread "
        "per run, including the own ST-A a fusion trains when its seed's adapter is not there yet):",
        "",
        "| system | runs | seeds | budget | wall minutes: mean per run (total) |",
        "|---|---|---|---|---|",
    ]
    for system in SYSTEMS:
        records = [r for (_, s), by_seed in runs.items() if s == system for r in by_seed.values()]
        if not records:
            continue
        budgets = sorted({json.dumps(r["budget"], sort_keys=True) for r in records})
        budget = "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(b).items()) for b in budgets)
        minutes = [r["wall_seconds"] / 60 for r in records]
        seeds = ", ".join(map(str, sorted({r["seed"] for r in records})))
        lines.append(
            f"| {system} | {len(records)} | {seeds} | {budget} | {statistics.mean(minutes):.1f} ({sum(minutes):.0f}) |"
        )
    commands = sorted({r["command"] for records in runs.values() for r in records.values()})
    seconds = sum(r["wall_seconds"] for records in runs.values() for r in records.values())
    lines += (
        [
            "",
            f"Wall time of all {sum(len(v) for v in runs.values())} runs: {seconds / 60:.0f} minutes. "
            "Commands that produced these files:",
            "",
        ]
        + [f"    {c}" for c in commands]
        + [""]
    )
    return lines


def paired_by_seed(runs: Runs, target: str, system: str, baseline: str) -> dict[int, float]:
    """Seed -> ``system`` minus ``baseline`` on ``target`` (x100), for the seeds both ran, in seed order."""
    one, other = runs.get((target, system), {}), runs.get((target, baseline), {})
    return {s: 100 * (score(one[s]) - score(other[s])) for s in sorted(set(one) & set(other))}


def paired_diffs(runs: Runs, target: str, system: str, baseline: str) -> list[float]:
    """``paired_by_seed``'s differences, in seed order."""
    return list(paired_by_seed(runs, target, system, baseline).values())


def mean_row(groups: Iterable[list[float]]) -> str:
    """A table's last row: per column, the mean of its targets' values and how many targets (k) it averages."""
    cells = (f"**{statistics.mean(g):+.1f}** (k={len(g)})" if g else "not run" for g in groups)
    return "| **mean** | " + " | ".join(cells) + " |"


def goals_section(
    protocol: str, targets: tuple[str, ...], runs: Runs, per_target: dict[str, dict[str, float]]
) -> list[str]:
    """Each fusion system against the issue's goals, from the paired differences above (a goal over targets a
    system has not run on all of is "not measured")."""
    lines = ["", "Against the issue's goals (paired differences from the table above):", ""]
    for system in FUSIONS:
        diffs = per_target[system]
        if not diffs:
            continue
        complete = len(diffs) == len(targets)
        seeds = sorted({seed for t in targets for seed in runs.get((t, system), {})})
        system_label = f"{system} (seeds {', '.join(map(str, seeds))})"
        if protocol == "fewshot":
            mean = statistics.mean(diffs.values())
            over_ft = [statistics.mean(d) for t in targets if (d := paired_diffs(runs, t, system, "full-ft"))]
            versus_ft = (
                f"{statistics.mean(over_ft):+.1f} over full fine-tuning on {len(over_ft)} targets"
                if over_ft else "full fine-tuning not run"
            )
            verdict = ("met" if mean >= 10 else "not met") if complete else f"not measured ({len(diffs)} targets)"
            lines.append(
                f"- {system_label}: {mean:+.1f} over ST-A on average (goal +10: {verdict}); {versus_ft}"
                + seed_spread(runs, targets, system)
            )
        else:
            parts = [
                f"{t} {diffs[t]:+.1f} (goal +3: {'met' if diffs[t] >= 3 else 'not met'})"
                for t in ("rte", "mrpc") if t in diffs
            ]
            mean, worst = statistics.mean(diffs.values()), min(diffs.values())
            scope = "" if complete else f" over the {len(diffs)} targets run"
            parts.append(f"mean {mean:+.1f}{scope} (goal +1: {'met' if mean >= 1 else 'not met'})")
            parts.append(f"worst {worst:+.1f} (goal no worse than -0.5: {'met' if worst >= -0.5 else 'not met'})")
            lines.append(f"- {system_label}: " + "; ".join(parts))
    return lines


def dev_selected(runs: Runs, target: str, candidates: tuple[str, ...]) -> dict[int, str]:
    """Seed -> the candidate system with the best dev score on ``target`` (ties: the first listed), over the seeds
    where ST-A and every candidate ran."""
    metric = get_task(target).main_metric
    chosen = {}
    for seed in sorted(set.intersection(*(set(runs.get((target, s), {})) for s in {"st-a", *candidates}))):
        dev = [runs[(target, system)][seed]["dev"][metric] for system in candidates]
        chosen[seed] = candidates[dev.index(max(dev))]
    return chosen


DIAGNOSTIC_PAIRS = (
    ("attention-family", "attention-v2"),
    ("family-no-own", "attention-family"),
    ("family-lr10", "attention-family"),
    ("family-joint", "attention-family"),
    ("family-src-head", "family-no-own"),
    ("family-src-head", "inter"),
)
"""Each diagnostic against the system it changes one thing of (and the best fusion against ``inter``)."""


def diagnostics_section(targets: tuple[str, ...], runs: Runs) -> list[str]:
    """``DIAGNOSTIC_PAIRS`` paired by seed: what one change does, on the seeds both systems ran."""
    pairs = [(a, b) for a, b in DIAGNOSTIC_PAIRS if any(paired_diffs(runs, t, a, b) for t in targets)]
    if not pairs:
        return []
    lines = [
        "Each diagnostic minus the system it changes, paired by seed (test, x100; seeds where both ran):",
        "",
        "| target | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
        "|---|" + "---|" * len(pairs),
    ]
    means: list[list[float]] = [[] for _ in pairs]
    for target in targets:
        row = []
        for index, (a, b) in enumerate(pairs):
            diffs = paired_diffs(runs, target, a, b)
            if diffs:
                means[index].append(statistics.mean(diffs))
            row.append(f"{statistics.mean(diffs):+.1f} (n={len(diffs)})" if diffs else "not run")
        lines.append(f"| {target} | " + " | ".join(row) + " |")
    lines.append(mean_row(means))
    return lines + [""]


def selection_section(targets: tuple[str, ...], runs: Runs) -> list[str]:
    """The few-shot table of ``DEV_SELECTIONS``: the chosen system's test score minus ST-A's, paired by seed."""
    lines = [
        "### Choosing a system on the dev split (fewshot)",
        "",
        "Per target and seed, the candidate with the best score on the 16-per-class dev split (the protocol's "
        "model-selection data) is reported, minus ST-A of that seed (test, x100); the candidates were listed in "
        "`DEV_SELECTIONS` after the runs above were seen, so this is an observation, not a pre-registered system. "
        + "; ".join(f"`{name}`: {', '.join(c)}" for name, c in DEV_SELECTIONS.items()) + ".",
        "",
        "| target | " + " | ".join(DEV_SELECTIONS) + " |",
        "|---|" + "---|" * len(DEV_SELECTIONS),
    ]
    means: dict[str, list[float]] = {name: [] for name in DEV_SELECTIONS}
    for target in targets:
        row = []
        for name, candidates in DEV_SELECTIONS.items():
            chosen = dev_selected(runs, target, candidates)
            if not chosen:
                row.append("not run")
                continue
            diffs = [paired_by_seed(runs, target, s, "st-a")[seed] for seed, s in chosen.items()]
            means[name].append(statistics.mean(diffs))
            picks = ", ".join(f"{s} {list(chosen.values()).count(s)}" for s in candidates if s in chosen.values())
            row.append(f"{statistics.mean(diffs):+.1f} (n={len(diffs)}; chose {picks})")
        lines.append(f"| {target} | " + " | ".join(row) + " |")
    lines.append(mean_row(means.values()))
    return lines + [""]


def seed_spread(runs: Runs, targets: tuple[str, ...], system: str) -> str:
    """The nine-target mean gain over ST-A seed by seed (seeds where every target ran both), and their spread."""
    paired = [paired_by_seed(runs, t, system, "st-a") for t in targets]
    seeds = [seed for seed in SEEDS["fewshot"] if all(seed in by_seed for by_seed in paired)]
    if len(seeds) < 2:
        return ""
    means = [statistics.mean(by_seed[seed] for by_seed in paired) for seed in seeds]
    each = ", ".join(f"{seed}: {m:+.1f}" for seed, m in zip(seeds, means))
    return f"; per seed ({each}), standard deviation {statistics.stdev(means):.1f}"


def weight_matrix(runs: Runs, method: str = "attention") -> dict[tuple[str, str], float]:
    """``{(source, target): mean fusion weight}`` of ``method``'s runs: over the test set's tokens, the fused points
    and the seeds; the target's own ST-A adapter is the source ``OWN``."""
    cells: dict[tuple[str, str], list[float]] = {}
    for (target, system), records in runs.items():
        for record in records.values() if system == method else ():
            weights = record.get("fusion_weights")
            if not weights:
                continue
            per_adapter = [sum(column) / len(column) for column in zip(*weights["mean"])]
            for adapter, value in zip(weights["adapters"], per_adapter):
                cells.setdefault((OWN if adapter == target else adapter, target), []).append(value)
    return {key: statistics.mean(values) for key, values in cells.items()}


def matrix_section(protocol: str, runs: Runs, plot: bool = True) -> list[str]:
    """The transfer-matrix figure's section (``plot``: also draw the figure into ``figures/``)."""
    cells = weight_matrix(runs)
    if not cells:
        return []
    path = FIGURES / f"{protocol}_attention_weights.png"
    if plot:
        from adapter_fusion.evaluation.plots import plot_transfer_matrix

        FIGURES.mkdir(exist_ok=True)
        sources = sorted({source for source, _ in cells} - {OWN}) + [OWN]
        title = f"{protocol}: mean attention-fusion weight on the test set"
        plot_transfer_matrix(cells, path, sources=sources, title=title, value_label="mean weight")
    return [
        f"### Where attention fusion looks ({protocol})",
        "",
        "Mean fusion weight of each source adapter (rows) on each target's test set (columns), averaged over "
        "tokens, fused layers and seeds; a column of uniform 1/N means fusion did not learn to prefer any "
        "adapter.",
        "",
        f"![{protocol} attention weights](figures/{path.name})",
        "",
    ]


def bank_comparison_section(protocol: str, targets: tuple[str, ...], runs: Runs) -> list[str]:
    """Attention fusion over bank v1 vs over bank v2, per seed where both ran, with where each looks at the last
    fused layer (its most weighted adapter there, and that weight)."""
    pairs = [(t, s) for t in targets for s in sorted(set(runs.get((t, "attention"), {}))
                                                     & set(runs.get((t, "attention-v2"), {})))]
    if not pairs:
        return []
    lines = [
        f"### Bank v1 vs bank v2 as attention fusion's sources ({protocol})",
        "",
        "Test score x100 per seed where both ran; last layer: the adapter with the largest mean fusion weight at the "
        "last fused layer on the test set (uniform would be 1/N, N = the sources plus the own ST-A).",
        "",
        "| target | seed | ST-A | attention (v1) | attention-v2 | v2 - v1 | v1 last layer | v2 last layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, seed in pairs:
        single = runs.get((target, "st-a"), {}).get(seed)
        v1, v2 = runs[(target, "attention")][seed], runs[(target, "attention-v2")][seed]
        alone = f"{100 * score(single):.1f}" if single else "not run"
        lines.append(
            f"| {target} | {seed} | {alone} | {100 * score(v1):.1f} | {100 * score(v2):.1f} | "
            f"{100 * (score(v2) - score(v1)):+.1f} | {_top_of_last_layer(v1)} | {_top_of_last_layer(v2)} |"
        )
    return lines + [""]


def _top_of_last_layer(record: dict) -> str:
    weights = record.get("fusion_weights")
    if not weights:
        return "-"
    last = weights["mean"][-1]
    best = max(range(len(last)), key=last.__getitem__)
    name = weights["adapters"][best]
    return f"{OWN if name == record['target'] else name} {last[best]:.2f}"


def write_results() -> Path:
    atomic_write_text(OUT, results_text(plot=True))
    return OUT


def results_text(plot: bool = False) -> str:
    """RESULTS.md's text from the result files and the bank's cards (``plot``: also draw its figures)."""
    lines = [
        "# AdapterFusion transfer study on the bundled all-MiniLM-L6-v2",
        "",
        "Generated by `python experiments/transfer/study.py --table-only` from `experiments/transfer/results/` "
        "and the bank's cards; every cell is a measured run (see `study.py` for the protocols and budgets).",
        "",
        "What these numbers say, and why the paper's fusion recipe falls short of the few-shot goal, with the "
        "evidence: "
        "[FINDINGS.md](FINDINGS.md) (written by hand from this page; each number there names its table).",
        "",
    ]
    for version in reversed(bank_versions()):
        lines += bank_section(version)
    for protocol, targets in (("fewshot", FEWSHOT_TARGETS), ("full", FULL_TARGETS)):
        runs = load(protocol)
        lines += study_section(protocol, targets, runs)
        if protocol == "fewshot":
            lines += diagnostics_section(targets, runs) + selection_section(targets, runs)
        lines += bank_comparison_section(protocol, targets, runs)
        lines += matrix_section(protocol, runs, plot)
    return "\n".join(lines)
