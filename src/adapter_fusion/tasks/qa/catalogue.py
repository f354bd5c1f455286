"""The registered extractive QA tasks (XQuAD English, COVID-QA, SQuAD v1.1) and how their splits are carved: by
article, so that no article is in two splits."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from adapter_fusion.tasks.base import CARVE_SEED, Carve, HubSource, LocalFile, LocalSource, TaskSpec, register_task
from adapter_fusion.tasks.qa.readers import SquadReader, split_by_article
from adapter_fusion.tasks.qa.type import QA_METRICS

DEV_FRACTION = 0.2
"""Share of the articles carved off as the validation split of a QA source without one."""


@dataclass(frozen=True)
class ArticleCarve(Carve):
    """A part of a by-article partition: the ``sizes`` part (one, a fraction of the articles) gets whole articles
    (``title``) drawn by ``readers.split_by_article`` with ``CARVE_SEED``; ``remainder`` the other articles. No
    article is in two parts. Rows keep the source's order."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.sizes) != 1 or not isinstance(self.sizes[0][1], float) or not 0.0 < self.sizes[0][1] < 1.0:
            raise ValueError(
                f"an ArticleCarve has one sized part, a fraction in (0, 1) of the articles; got {self.sizes}"
            )

    def indices(self, num_rows: int) -> list[int]:
        raise TypeError("an ArticleCarve partitions by article, not by row count: use select(dataset)")

    def select(self, dataset: datasets.Dataset) -> datasets.Dataset:
        ((sized_part, fraction),) = self.sizes
        rows = [{"title": title, "row": row} for row, title in enumerate(dataset["title"])]
        rest, sized = split_by_article(rows, float(fraction), seed=CARVE_SEED)
        return dataset.select([row["row"] for row in (sized if self.part == sized_part else rest)])


def article_splits(source: LocalFile | str, dev_fraction: float = DEV_FRACTION) -> dict[str, ArticleCarve]:
    """``train`` and ``validation`` carved from one source by article (``validation``: ``dev_fraction`` of them)."""
    sizes = (("validation", dev_fraction),)
    return {part: ArticleCarve(source, part, sizes) for part in ("train", "validation")}


@dataclass(frozen=True)
class QAHubSource(HubSource):
    """A SQuAD-style Hub dataset (one row per question). ``columns`` maps our fields (``id``, ``title``,
    ``context``, ``question``, ``answers``) to Hub columns where the names differ; without a title column the
    paragraph (context) stands in for the article. Answers go through ``readers.read_squad``."""

    realign: bool = True
    """Trim answers and move offsets that miss their text to the nearest occurrence (``read_squad(realign=...)``);
    False drops such answers."""


XQUAD_FILE = "xquad_en/xquad.en.json"
COVID_QA_FILE = "covid_qa/200423_covidQA.json"

register_task(
    TaskSpec(
        name="xquad",
        task_type="extractive_qa",
        label_names=(),
        is_pair=False,
        metrics=QA_METRICS,
        main_metric="f1",
        aliases=("xquad_en", "qa"),
        description="XQuAD English: extractive QA on Wikipedia paragraphs (240 paragraphs of 48 articles, 1,190 "
        "questions, one answer each; a subset of SQuAD v1.1 dev). There is no train split: 20% of the "
        "articles are carved off by title as the validation split (CARVE_SEED; readers.split_by_article): "
        "train 38 articles / 946 questions, validation 10 articles / 244 questions; no test split. Local: "
        f"{XQUAD_FILE}. Hub: google/xquad 'xquad.en' (its only split, 'validation', carved the same way; the "
        "Hub rows have no article title, so there each paragraph stands in for an article).",
        local=LocalSource(article_splits(LocalFile((XQUAD_FILE,), SquadReader()))),
        hub=QAHubSource("google/xquad", "xquad.en", splits=article_splits("validation")),
    )
)

register_task(
    TaskSpec(
        name="covid_qa",
        task_type="extractive_qa",
        label_names=(),
        is_pair=False,
        metrics=QA_METRICS,
        main_metric="f1",
        aliases=("covidqa", "covid_qa_deepset"),
        description="COVID-QA: extractive QA on 98 long COVID-19 scientific articles (1,380 questions; contexts of "
        "~29k characters on average, so many windows per question). Answers are realigned "
        "(readers.SquadReader(realign=True)): 234 answers' offsets do not match their text as given; 393 "
        "answers were trimmed of surrounding whitespace and 38 moved to the nearest occurrence of their text; "
        "0 dropped. 20% of the articles are carved off by article as the validation split (CARVE_SEED): "
        "train 78 articles / 1,184 questions, validation 20 articles / 196 questions; no test split. Local: "
        f"{COVID_QA_FILE}. Hub: deepset/covid_qa_deepset (the later 2,019-question release, split 'train', "
        "articles = document_id, realigned and carved the same way).",
        local=LocalSource(article_splits(LocalFile((COVID_QA_FILE,), SquadReader(realign=True)))),
        hub=QAHubSource(
            "deepset/covid_qa_deepset", None, splits=article_splits("train"), columns={"title": "document_id"}
        ),
    )
)

register_task(TaskSpec(
    name="squad", task_type="extractive_qa", label_names=(), is_pair=False,
    metrics=("exact_match", "f1"), main_metric="f1", aliases=("squad_v1", "squad1.1"),
    description="SQuAD v1.1: extractive QA on Wikipedia paragraphs. Local: squad_v1 train (87,599 questions) and dev "
                "(10,570) as validation. The local train file's answer_start is each answer's first occurrence in "
                "the context (answers whose offset does not match are dropped). XQuAD-en is a subset of this dev set: "
                "never train on it when evaluating on XQuAD. Hub: rajpurkar/squad.",
    local=LocalSource({
        "train": LocalFile(("squad_v1/train-v1.1.json.gz",), SquadReader()),
        "validation": LocalFile(("squad_v1/dev-v1.1.json.gz",), SquadReader()),
    }),
    hub=QAHubSource("rajpurkar/squad", None, splits={"train": "train", "validation": "validation"}),
))
