"""The registered generation tasks: DialogSum and SciTLDR summarization, Multi30k English -> German / French
translation."""

from __future__ import annotations

from adapter_fusion.tasks.base import HubSource, LocalFile, LocalSource, register_task
from adapter_fusion.tasks.generation.readers import DialogSumReader, ParallelLinesReader, SciTldrReader
from adapter_fusion.tasks.generation.type import GenerationTaskSpec

SUMMARY_METRICS = ("rouge1", "rouge2", "rougeL")
TRANSLATION_METRICS = ("bleu", "chrf")
LANGUAGES = {"en": "English", "de": "German", "fr": "French"}

register_task(
    GenerationTaskSpec(
        name="dialogsum",
        task_type="generation",
        label_names=(),
        is_pair=False,
        metrics=SUMMARY_METRICS,
        main_metric="rougeL",
        description=(
            "DialogSum dialogue summarization (ROUGE-1/2/L F1 against the reference summary). Local: "
            "dialogsum/dialogsum.train.jsonl.gz (12,460) is train, dialogsum/dialogsum.dev.jsonl (500) validation; "
            "no local test split. Hub: knkarthick/dialogsum."
        ),
        aliases=("summarization", "dialog_sum"),
        local=LocalSource(
            {
                "train": LocalFile(("dialogsum/dialogsum.train.jsonl.gz",), DialogSumReader()),
                "validation": LocalFile(("dialogsum/dialogsum.dev.jsonl",), DialogSumReader()),
            }
        ),
        hub=HubSource("knkarthick/dialogsum", None, columns={"source": "dialogue", "target": "summary"}),
        prompt="Summarize the dialogue.\n{source}\nSummary:",
        max_target_tokens=64,
        max_new_tokens=48,
    )
)

register_task(
    GenerationTaskSpec(
        name="scitldr",
        task_type="generation",
        label_names=(),
        is_pair=False,
        metrics=SUMMARY_METRICS,
        main_metric="rougeL",
        description=(
            "SciTLDR-A: one-sentence TLDR of a paper abstract (ROUGE-1/2/L F1, best over the 1-4 references). "
            "Local: scitldr/train.jsonl (1,992) is train, scitldr/dev.jsonl (619) validation; no local test split. "
            "Hub: allenai/scitldr (config Abstract)."
        ),
        aliases=("tldr",),
        local=LocalSource(
            {
                "train": LocalFile(("scitldr/train.jsonl",), SciTldrReader()),
                "validation": LocalFile(("scitldr/dev.jsonl",), SciTldrReader()),
            }
        ),
        hub=HubSource("allenai/scitldr", "Abstract", columns={"source": "source", "target": "target"}),
        prompt="Write a one-sentence TL;DR of the abstract.\n{source}\nTL;DR:",
        max_target_tokens=64,
        max_new_tokens=48,
    )
)

for _target in ("de", "fr"):
    register_task(
        GenerationTaskSpec(
            name=f"multi30k_en_{_target}",
            task_type="generation",
            label_names=(),
            is_pair=False,
            metrics=TRANSLATION_METRICS,
            main_metric="bleu",
            description=(
                f"Multi30k task 1 translation English -> {LANGUAGES[_target]} (sacreBLEU, chrF). Local: "
                f"multi30k/train.{{en,{_target}}}.gz (29,000 pairs) is train, multi30k/val.{{en,{_target}}}.gz "
                "(1,014) validation; no local test split."
                + (" Hub: bentrevett/multi30k (en-de)." if _target == "de" else " No Hub source (local only).")
            ),
            aliases=(f"translation_en_{_target}", f"en-{_target}"),
            local=LocalSource(
                {
                    "train": LocalFile(
                        ("multi30k/train.en.gz", f"multi30k/train.{_target}.gz"), ParallelLinesReader()
                    ),
                    "validation": LocalFile(
                        ("multi30k/val.en.gz", f"multi30k/val.{_target}.gz"), ParallelLinesReader()
                    ),
                }
            ),
            hub=(
                HubSource("bentrevett/multi30k", None, columns={"source": "en", "target": "de"})
                if _target == "de"
                else None
            ),
            prompt=f"Translate English to {LANGUAGES[_target]}.\nEnglish: {{source}}\n{LANGUAGES[_target]}:",
            max_target_tokens=64,
            max_new_tokens=48,
        )
    )
