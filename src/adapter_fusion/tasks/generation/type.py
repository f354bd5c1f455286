"""Generation with a causal decoder LM: the ``generation`` task type (summarization, translation; its tasks are
in ``catalogue.py``).

Schema: ``source`` (str), ``target`` (str: the training target), ``references`` (list of str: every acceptable
output, for scoring). An example becomes ``prompt(source) + target + eos``; the prompt tokens get label -100, so the
loss (``heads/causal_lm.py``) is on the target tokens only. Evaluation generates greedily from the prompt (left
padded) and scores the decoded continuation with ROUGE (summarization) or BLEU/chrF (translation); during
training checkpoints are chosen by eval loss (generating inside every evaluation would dominate CPU time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import torch

from adapter_fusion.config import check_positive
from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec, get_task
from adapter_fusion.tasks.generation.metrics import score_generations
from adapter_fusion.tasks.types import MetricsFn, TaskType, evaluation_loop, register_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel

IGNORE_INDEX = -100
GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "chrf")
DEFAULT_DECODER = "smollm2"


@dataclass(frozen=True)
class GenerationTaskSpec(TaskSpec):
    """A ``TaskSpec`` with the prompt that turns a source into the model's input, and generation lengths."""

    prompt: str = "{source}\n"
    """Template of the model input; ``{source}`` is replaced by the example's source text (then wrapped in the
    tokenizer's chat template, if it has one)."""
    max_source_tokens: int = 256
    """Source tokens kept (longer sources are cut at the end before the prompt is built, so the instruction and the
    chat template always survive). Generation tasks use this instead of ``ModelConfig.max_seq_length``."""
    max_target_tokens: int = 64
    """Target tokens kept for training (longer targets are cut)."""
    max_new_tokens: int = 64
    """Tokens generated at evaluation and prediction."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if "{source}" not in self.prompt:
            raise ValueError(f"task {self.name!r}: prompt must contain '{{source}}'; got {self.prompt!r}")
        check_positive("max_source_tokens", self.max_source_tokens, integer=True)
        check_positive("max_target_tokens", self.max_target_tokens, integer=True)
        check_positive("max_new_tokens", self.max_new_tokens, integer=True)


def _prompt(spec: TaskSpec | None, source: str, tokenizer: PreTrainedTokenizerBase) -> str:
    """The model input for ``source``: the task's prompt, wrapped in the tokenizer's chat template when it has one
    (instruction-tuned decoders such as SmolLM2-Instruct expect it; the same text is used for training and
    generation, so the zero-shot base model and the adapters see identical inputs)."""
    limit = getattr(spec, "max_source_tokens", None)
    if limit is not None:
        ids = tokenizer(source, add_special_tokens=False)["input_ids"]
        if len(ids) > limit:
            source = tokenizer.decode(ids[:limit], skip_special_tokens=True)
    text = getattr(spec, "prompt", "{source}").replace("{source}", source)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


class GenerationType(TaskType):
    """Conditional generation with a decoder LM and the ``causal_lm`` head (the base model's own LM head)."""

    name = "generation"
    head_type = "causal_lm"
    columns = ("source", "target", "references")
    causal_lm = True
    default_model = DEFAULT_DECODER
    max_loss_eval_batch_size = 8

    def metric_names(self) -> list[str]:
        return list(GENERATION_METRICS)

    def num_labels(self, spec: TaskSpec) -> int:
        return 1

    # ------------------------------------------------------------------ data
    def to_dataset(
        self, spec: TaskSpec, raw: list[dict[str, Any]], label_map: LabelMap | None, origin: str
    ) -> datasets.Dataset:
        sources, targets, references = [], [], []
        for index, record in enumerate(raw):
            source, target = record.get("source"), record.get("target")
            refs = record.get("references") or ([target] if target else [])
            if not isinstance(source, str) or not source.strip():
                raise ValueError(f"task {spec.name!r}: example {index} in {origin} has an empty source: {record!r}")
            if not isinstance(target, str) or not target.strip():
                raise ValueError(f"task {spec.name!r}: example {index} in {origin} has an empty target: {record!r}")
            sources.append(source)
            targets.append(target)
            references.append([str(ref) for ref in refs])
        features = datasets.Features(
            {
                "source": datasets.Value("string"),
                "target": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }
        )
        return datasets.Dataset.from_dict(
            {"source": sources, "target": targets, "references": references}, features=features
        )

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        source, target = hub.columns.get("source"), hub.columns.get("target")
        if not source or not target:
            raise ValueError(f"task {spec.name!r}: its HubSource.columns must map 'source' and 'target'")
        missing = [c for c in (source, target) if c.split(".")[0] not in raw.column_names]
        if missing:
            raise ValueError(f"{origin} lacks columns {missing}; it has {raw.column_names}")

        def field(row: dict[str, Any], path: str) -> Any:
            value: Any = row
            for part in path.split("."):
                value = value[part]
            return value

        records = []
        for row in raw:
            src, tgt = field(row, source), field(row, target)
            src = " ".join(src) if isinstance(src, list) else src
            refs = [str(t) for t in tgt] if isinstance(tgt, list) else [str(tgt)]
            records.append({"source": str(src), "target": refs[0], "references": refs})
        return self.to_dataset(spec, records, None, origin)

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """``input_ids`` = prompt + target + eos, ``labels`` = -100 on the prompt, the token ids on the target. The
        source is cut to the spec's ``max_source_tokens`` and the target to ``max_target_tokens``; ``max_length``
        does not apply (a prompt is never cut from the left)."""
        self.check_dataset(dataset)
        max_target = getattr(spec, "max_target_tokens", 64)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos token; a decoder tokenizer is needed")

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            prompts = [_prompt(spec, s, tokenizer) for s in batch["source"]]
            prompts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
            targets = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
            input_ids, labels = [], []
            for prompt_ids, target_ids in zip(prompts, targets):
                target_ids = target_ids[: max_target - 1] + [eos]
                input_ids.append(prompt_ids + target_ids)
                labels.append([IGNORE_INDEX] * len(prompt_ids) + target_ids)
            return {"input_ids": input_ids, "attention_mask": [[1] * len(i) for i in input_ids], "labels": labels}

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        pad = pad_token_id(tokenizer)

        def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
            width = max(len(f["input_ids"]) for f in features)
            batch: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
            for feature in features:
                extra = width - len(feature["input_ids"])
                batch["input_ids"].append(list(feature["input_ids"]) + [pad] * extra)
                batch["attention_mask"].append(list(feature["attention_mask"]) + [0] * extra)
                batch["labels"].append(list(feature["labels"]) + [IGNORE_INDEX] * extra)
            return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}

        return collate

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn | None:
        return None  # scored by generating: see evaluate()

    def evaluate(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: TaskSpec,
        dataset: datasets.Dataset,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        head: str | None = None,
        adapter_names: Any = None,
    ) -> dict[str, float]:
        """Greedy generation from each prompt, scored against the references with ``spec.metrics``."""
        self.check_dataset(dataset)
        outputs = self.generate(
            model, tokenizer, spec, list(dataset["source"]), max_length=max_length,
            batch_size=min(batch_size, 16), adapter_names=adapter_names,
        )  # fmt: skip
        return score_generations(spec, outputs, [list(r) for r in dataset["references"]])

    # ------------------------------------------------------------------ inference
    def generate(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: TaskSpec | None,
        sources: Sequence[str],
        *,
        max_length: int = 128,
        batch_size: int = 16,
        adapter_names: Any = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy continuations of ``prompt(source)`` (left padded batches), decoded without special tokens.
        ``max_length`` is unused: the spec's ``max_source_tokens`` bounds the prompt."""
        new_tokens = max_new_tokens or getattr(spec, "max_new_tokens", 64)
        check_positive("max_new_tokens", new_tokens, integer=True)
        pad = pad_token_id(tokenizer)
        device = next(model.parameters()).device  # the prompts go where the model is (a GPU model: there)

        def generate_batch(chunk: Sequence[str]) -> list[str]:
            texts = [_prompt(spec, s, tokenizer) for s in chunk]
            encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
            mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded]
            attention_mask = torch.tensor(mask, device=device)
            generated = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, adapter_names=adapter_names,
                max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
            return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in generated[:, width:]]

        chunks = [sources[start : start + batch_size] for start in range(0, len(sources), batch_size)]
        return [text for texts in evaluation_loop(model, chunks, generate_batch) for text in texts]

    def predict(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        head: str,
        inputs: Sequence[Any],
        *,
        max_length: int = 128,
        batch_size: int = 32,
        max_new_tokens: int | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """``inputs``: source texts (the task's prompt is applied). Returns ``{"generated_text": ...}`` each."""
        if options:
            raise TypeError(f"unexpected options for generation: {sorted(options)}; allowed: max_new_tokens")
        if any(not isinstance(text, str) or not text.strip() for text in inputs):
            raise ValueError(f"generation inputs must be non-empty strings; got {list(inputs)!r}")
        task = model.head_config(head).task
        spec = get_task(task) if task else None
        texts = self.generate(
            model, tokenizer, spec, list(inputs), max_length=max_length, batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        )  # fmt: skip
        return [{"generated_text": text} for text in texts]


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its eos id (decoders often have no pad token)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither a pad nor an eos token")
    return int(pad)


register_task_type(GenerationType())
