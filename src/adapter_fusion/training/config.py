"""Model and training configs shared by adapter, fusion and joint training."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adapter_fusion.config import JsonConfig, check_choice, check_positive, check_range, field_aliases
from adapter_fusion.heads.base import POOLINGS

MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Which base model to load and how inputs are tokenised."""

    config_type: ClassVar[str] = "model"

    model_name_or_path: str = "default"
    """Hub id or local path of the base model; 'default' is the bundled all-MiniLM-L6-v2."""
    max_seq_length: int = 128
    """Inputs are truncated to this many tokens."""
    pooling: str = "mean"
    """How the classification head pools token states: 'cls', 'mean' or 'last'."""
    casing_dim: int = 0
    """Token classification (NER, POS) only: give the tagging head a learned embedding of this size of each word's
    casing (lower, Title, UPPER, mixed, digit, other; first word or headline in capitals). Uncased tokenizers, the
    default MiniLM's among them, drop the case that tells NNP from NN. 0 = off."""
    tokenizer_name_or_path: str | None = None
    """Hub id or local path of the tokenizer; the base model's own when unset."""
    num_labels: int | None = None
    """Number of classes of a task that is not registered (its data given by the user); registered tasks bring
    their own labels."""
    multi_task: bool = False
    """Train one fusion on several tasks, a head per task (FusionTrainer takes them from task_names, the
    preprocessor's task_configs or the data's 'task' column)."""
    task_names: tuple[str, ...] = ()
    """The tasks of a multi-task fusion (names or aliases: 'sentiment' is SST-2); empty: from the data."""

    def __post_init__(self) -> None:
        check_positive("max_seq_length", self.max_seq_length, integer=True)
        check_choice("pooling", self.pooling, POOLINGS)
        check_positive("casing_dim", self.casing_dim, allow_zero=True, integer=True)
        if self.num_labels is not None:
            check_positive("num_labels", self.num_labels, integer=True)
        if not isinstance(self.multi_task, bool):
            raise TypeError(f"multi_task must be a bool; got {self.multi_task!r}")
        if isinstance(self.task_names, (list, str)):
            names = [self.task_names] if isinstance(self.task_names, str) else self.task_names
            object.__setattr__(self, "task_names", tuple(names))
        if not all(isinstance(name, str) and name for name in self.task_names):
            raise ValueError(f"task_names must be non-empty task names; got {self.task_names!r}")
        if len(self.task_names) > 1 and not self.multi_task:
            raise ValueError(f"task_names names {len(self.task_names)} tasks {list(self.task_names)}; set "
                             "multi_task=True for a multi-task fusion")  # fmt: skip


@field_aliases(per_device_train_batch_size="batch_size")
@dataclasses.dataclass(frozen=True)
class TrainingConfig(JsonConfig):
    """How one training run goes: budget, learning rates per parameter group, evaluation and checkpoints."""

    config_type: ClassVar[str] = "training"

    output_dir: str = "outputs/run"
    """Where checkpoints and logs go."""
    num_train_epochs: float = 3.0
    """Number of passes over the training data (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use num_train_epochs)."""
    max_train_minutes: float | None = None
    """Stop after this much wall time (the last state is evaluated and saved)."""
    batch_size: int = 32
    """Training examples per step."""
    eval_batch_size: int = 128
    """Examples per evaluation batch."""
    adapter_learning_rate: float = 1e-3
    """Learning rate of adapter weights."""
    fusion_learning_rate: float = 5e-5
    """Learning rate of fusion weights."""
    fusion_weight_learning_rate: float | None = None
    """Learning rate of a weighted fusion's mixing weights (one logit per adapter); default 100 x
    fusion_learning_rate. Adam moves a weight by about its learning rate per step, so at the fusion's own rate a few
    hundred steps leave the mixture close to uniform."""
    head_learning_rate: float | None = None
    """Learning rate of head weights (default: the adapter learning rate, or the base one in full fine-tuning)."""
    base_learning_rate: float = 2e-5
    """Learning rate of the base model's weights (full fine-tuning only)."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and layer norms)."""
    warmup_ratio: float = 0.06
    """Fraction of steps with linear warm-up."""
    eval_steps: int | None = None
    """Evaluate (and checkpoint) every this many steps; once per epoch when unset."""
    logging_steps: int = 50
    """Log the training loss every this many steps."""
    seed: int = 42
    """Seed for initialisation, shuffling and dropout."""
    max_train_examples: int | None = None
    """Use a fixed random subset of the training data of this size."""
    max_eval_examples: int | None = None
    """Use a fixed random subset of the evaluation data of this size."""
    full_finetune: bool = False
    """Train the whole base model instead of an adapter (the baseline adapters are compared against)."""
    load_best_model_at_end: bool = True
    """Keep the checkpoint with the best main metric of the task."""
    save_total_limit: int = 2
    """How many checkpoints to keep on disk."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster on CPU)."""
    resume_from_checkpoint: str | None = None
    """A checkpoint directory to resume from, or 'last' for the newest in output_dir."""
    disable_tqdm: bool = False
    """Hide progress bars."""
    fusion_epochs: float | None = None
    """Epochs of fusion training (FusionTrainer); num_train_epochs when unset."""
    fusion_checkpoint_dir: str | None = None
    """Where FusionTrainer.save_fusion_model() writes the fusion, and where a multi-task fusion whose tasks come
    from the data is saved when training ends; 'fusion_model' when unset."""
    ddp_find_unused_parameters: bool = True
    """On several processes (torchrun, accelerate launch): whether DDP looks each step for trainable weights the
    step did not use. True works for every run (multi-task steps use one task's head and adapter; a router or a
    sparse fusion leaves weights out); false saves that search when every trainable weight is used in every step
    (single-task adapter or fusion training), and DDP stops with an error if one is not."""

    def __post_init__(self) -> None:
        check_positive("num_train_epochs", self.num_train_epochs)
        if not isinstance(self.max_steps, int) or (self.max_steps < 1 and self.max_steps != -1):
            raise ValueError(f"max_steps must be -1 or a positive integer; got {self.max_steps!r}")
        if self.max_train_minutes is not None:
            check_positive("max_train_minutes", self.max_train_minutes)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("eval_batch_size", self.eval_batch_size, integer=True)
        for name in ("adapter_learning_rate", "fusion_learning_rate", "base_learning_rate"):
            check_positive(name, getattr(self, name))
        for name in ("head_learning_rate", "fusion_weight_learning_rate"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        if self.eval_steps is not None:
            check_positive("eval_steps", self.eval_steps, integer=True)
        check_positive("logging_steps", self.logging_steps, integer=True)
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), integer=True)
        check_positive("save_total_limit", self.save_total_limit, integer=True)
        check_positive("seed", self.seed, allow_zero=True, integer=True)
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}] (numpy's range); got {self.seed}")
        if self.fusion_epochs is not None:
            check_positive("fusion_epochs", self.fusion_epochs)
        if not isinstance(self.ddp_find_unused_parameters, bool):
            value = self.ddp_find_unused_parameters
            raise TypeError(f"ddp_find_unused_parameters must be true or false; got {value!r}")

    def for_fusion(self) -> TrainingConfig:
        """This config as fusion training reads it: ``fusion_epochs`` (when set) as the number of epochs."""
        if self.fusion_epochs is None:
            return self
        return self.replace(num_train_epochs=self.fusion_epochs, fusion_epochs=None)
