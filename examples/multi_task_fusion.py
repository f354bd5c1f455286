"""Multi-task fusion: ONE fusion that serves several tasks, and routing unlabelled inputs to the right task.

1. Train an adapter + head per task at once (``MultiTaskTrainer``, what ``adapter-fusion train-multitask`` runs)
   on SST-2 (sentiment), MNLI (inference) and AG News (topic).
2. Fuse the three adapters once for all three tasks (the documented workflow: ``FusionTrainer(fusion_config)``
   and a dataset whose rows carry a ``task`` column): attention fusion (Pfeiffer et al., 2021), a head per task,
   and a router head that learns which task an input belongs to, all trained together.
3. Reload the one fusion directory and predict for each task with ``task=...``, then without it (routed), and
   with a subset of the fused adapters (an ablation).

Run from the project root (data from ../shared/data, or $ADAPTER_FUSION_DATA_DIR):

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python examples/multi_task_fusion.py            # a few minutes on a CPU
    HF_HUB_OFFLINE=1 python examples/multi_task_fusion.py --steps 4 --examples 32       # a smoke run (seconds)

The budgets are small, so the scores are far from converged; experiments/multitask_fusion.py compares multi-task
fusion with train-multitask and per-task fusions and measures routing. Outputs go to outputs/multi_task_fusion/.
"""

from __future__ import annotations

import argparse
import logging

import datasets
import torch

from adapter_fusion import FusionConfig, FusionPipeline, FusionTrainer, ModelConfig, TrainingConfig
from adapter_fusion.tasks import load_task_split
from adapter_fusion.training.multi_task_trainer import MultiTaskTrainer

logging.basicConfig(level=logging.WARNING)
OUT = "outputs/multi_task_fusion"
TASKS = {"sentiment": "sst2", "nli": "mnli", "topic": "ag_news"}  # the names users call them -> registered tasks


def mixed_dataset(split: str, examples: int) -> datasets.Dataset:
    """Rows ``{"text", "text_pair", "labels", "task"}`` of all three tasks, as a user would bring them."""
    rows = []
    for name, task in TASKS.items():
        for row in load_task_split(task, split, max_examples=examples, seed=0):
            rows.append({"text": row["text_a"], "text_pair": row["text_b"], "labels": row["label"], "task": name})
    return datasets.Dataset.from_list(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps of each stage")
    parser.add_argument("--examples", type=int, default=1000, help="training examples per task")
    args = parser.parse_args()
    training = dict(max_steps=args.steps, batch_size=16, eval_steps=args.steps, max_eval_examples=100,
                    max_train_examples=args.examples, disable_tqdm=True, seed=0, save_total_limit=1)  # fmt: skip

    # 1. an adapter + head per task, trained together (temperature sampling over the tasks)
    adapters = MultiTaskTrainer(list(TASKS.values()), ModelConfig(max_seq_length=64),
                                training_config=TrainingConfig(output_dir=f"{OUT}/runs/adapters", **training),
                                sampling="temperature", temperature=2.0)  # fmt: skip
    metrics = adapters.train()
    print("1. train-multitask dev accuracy:", {t: round(metrics[f"{t}_accuracy"], 3) for t in TASKS.values()})
    saved = adapters.save(f"{OUT}/adapters")

    # 2. one fusion for every task: the tasks come from the data's "task" column
    paths = [str(saved[task]) for task in TASKS.values()]
    fusion_config = FusionConfig(adapter_paths=paths, fusion_method="attention")
    fusion_trainer = FusionTrainer(
        fusion_config, model_config=ModelConfig(max_seq_length=64),
        training_config=TrainingConfig(output_dir=f"{OUT}/runs/fusion", fusion_learning_rate=5e-4,
                                       fusion_checkpoint_dir=f"{OUT}/fusion", **training),
    )  # fmt: skip
    metrics = fusion_trainer.train_fusion(mixed_dataset("train", args.examples), mixed_dataset("validation", 100))
    print("2. multi-task fusion dev accuracy:", {t: round(metrics[f"{t}_accuracy"], 3) for t in TASKS.values()},
          "router:", round(metrics["router_accuracy"], 3))  # fmt: skip

    # 3. one directory serves every task
    pipeline = FusionPipeline.from_pretrained(f"{OUT}/fusion")
    print("3. tasks:", sorted(pipeline.tasks), "| fused adapters:", list(pipeline.model.fusion.adapter_names))
    print("   sentiment:", pipeline.predict("A gorgeous, witty film.", task="sentiment")["label"])
    print("   nli:", pipeline.predict("A man sleeps.", task="nli", text_pairs="A person rests.")["label"])
    print("   topic:", pipeline.predict("Stocks fell as oil prices rose.", task="topic")["label"])
    for text in ("What a dull, lifeless movie.", "The striker scored twice in the final.", "Who wrote Hamlet?"):
        routed = pipeline.predict(text)  # no task: the router picks the head
        print(f"   routed {text!r}: task {routed['task']} ({routed['task_score']:.2f}), label {routed['label']}")
    batch = pipeline.tokenizer(["A gorgeous, witty film."], return_tensors="pt")
    with torch.no_grad():  # an ablation: the sentiment head with only the sentiment adapter fused
        alone = pipeline.model(**batch, head="sst2", adapter_names=["sst2"]).logits.softmax(-1)
        everything = pipeline.model(**batch, head="sst2").logits.softmax(-1)
    print(f"   P(positive): all adapters {everything[0, 1]:.3f}, the SST-2 adapter alone {alone[0, 1]:.3f}")


if __name__ == "__main__":
    main()
