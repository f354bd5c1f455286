"""The registered multiple-choice tasks: CODAH (five cross-validation folds), DREAM and PIQA."""

from __future__ import annotations

from adapter_fusion.tasks.base import Carve, HubSource, LocalFile, LocalSource, TaskSpec, register_task
from adapter_fusion.tasks.choice.readers import CodahReader, DreamReader, PiqaReader

CODAH_FOLDS = 5
PIQA_VALIDATION = 0.2
PIQA_TEST = 0.2


def codah_spec(fold: int) -> TaskSpec:
    """CODAH on cross-validation fold ``fold`` (the task ``codah`` is fold 0, ``codah_fold1``..``codah_fold4`` the
    others)."""
    folder = f"codah/cv_split/fold_{fold}"
    reader = CodahReader()
    name = "codah" if fold == 0 else f"codah_fold{fold}"
    return TaskSpec(
        name=name,
        task_type="multiple_choice",
        label_names=(),
        is_pair=False,
        metrics=("accuracy",),
        main_metric="accuracy",
        description=(
            f"CODAH commonsense sentence completion (4 options), cross-validation fold {fold} of {CODAH_FOLDS}"
            + (" (the task codah is fold 0; codah_fold1..codah_fold4 are the others)" if fold == 0 else "")
            + f". Local: {folder}/{{train,dev,test}}.tsv as train/validation/test (fold 0: 1,665 / 556 / 555). "
            f"Hub: jaredfern/codah, config fold_{fold} (question_propmt, candidate_answers, correct_answer_idx)."
        ),
        aliases=("codah_fold0",) if fold == 0 else (),
        local=LocalSource(
            {
                "train": LocalFile((f"{folder}/train.tsv",), reader),
                "validation": LocalFile((f"{folder}/dev.tsv",), reader),
                "test": LocalFile((f"{folder}/test.tsv",), reader),
            }
        ),
        hub=HubSource(
            "jaredfern/codah",
            f"fold_{fold}",
            columns={"context": "question_propmt", "options": "candidate_answers", "label": "correct_answer_idx"},
        ),
    )


for _fold in range(CODAH_FOLDS):
    register_task(codah_spec(_fold))

register_task(TaskSpec(
    name="dream",
    task_type="multiple_choice",
    label_names=(),
    is_pair=False,
    metrics=("accuracy",),
    main_metric="accuracy",
    description=(
        "DREAM dialogue-based reading comprehension (3 options). Local: dream/{train,dev,test}.json as "
        "train/validation/test (6,116 / 2,040 / 2,041 questions); the context is the dialogue (turns joined by "
        "newlines), each option is scored as (dialogue, question + ' ' + option), the dialogue truncated from its "
        "end. Hub: dataset-org/dream (dialogue, question, choice, answer text)."
    ),
    local=LocalSource({
        "train": LocalFile(("dream/train.json",), DreamReader()),
        "validation": LocalFile(("dream/dev.json",), DreamReader()),
        "test": LocalFile(("dream/test.json",), DreamReader()),
    }),
    hub=HubSource(
        "dataset-org/dream", None, columns={"context": "dialogue", "question": "question", "options": "choice",
                                            "answer": "answer"},
    ),
))  # fmt: skip

_PIQA_FILE = LocalFile(("piqa/valid.jsonl", "piqa/valid-labels.lst"), PiqaReader())
_PIQA_SIZES = (("validation", PIQA_VALIDATION), ("test", PIQA_TEST))
register_task(TaskSpec(
    name="piqa",
    task_type="multiple_choice",
    label_names=(),
    is_pair=False,
    metrics=("accuracy",),
    main_metric="accuracy",
    description=(
        "PIQA physical commonsense (goal, 2 solutions). Local: only the labelled official validation set "
        "(piqa/valid.jsonl + valid-labels.lst, 1,838) exists, carved with CARVE_SEED into validation 20% (368), "
        "test 20% (368) and train the rest (1,102). Hub: ybisk/piqa train (16,113) / validation (1,838); its test "
        "labels are hidden."
    ),
    local=LocalSource({part: Carve(_PIQA_FILE, part, _PIQA_SIZES) for part in ("train", "validation", "test")}),
    hub=HubSource(
        "ybisk/piqa", None, splits={"train": "train", "validation": "validation"}, unlabelled=("test",),
        columns={"context": "goal", "options": "sol1,sol2", "label": "label"},
    ),
))  # fmt: skip
