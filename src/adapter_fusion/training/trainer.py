"""One training path for adapters, fusion and full fine-tuning, on ``transformers.Trainer``.

What trains is decided by ``requires_grad`` (set by module type on the model); the optimizer gets one
parameter group per module kind (adapter / fusion / fusion_weights / head / base), each with its own learning rate
(``fusion_weights``: a fusion's input-independent mixing weights, ``FusionLayer.mixing_parameters``).
Checkpoints hold only the trainable weights, as safetensors.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import safe_open
from torch import nn
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from adapter_fusion.adapters import ADAPTER_MODULES
from adapter_fusion.fusion.base import FusionLayer
from adapter_fusion.io import load_tensors, save_tensors, write_json
from adapter_fusion.training.config import TrainingConfig
from adapter_fusion.training.distributed import any_process

logger = logging.getLogger(__name__)

TRAINABLE_WEIGHTS = "trainable.safetensors"
PARAM_GROUPS = ("adapter", "fusion", "fusion_weights", "head", "base")
MIXING_RATE_FACTOR = 100.0
"""``fusion_weight_learning_rate`` when unset: this many times ``fusion_learning_rate``."""


def parameter_kind(model: nn.Module) -> dict[str, str]:
    """Map each parameter name to its kind, by the type of the module that owns it (a fusion's mixing weights,
    ``FusionLayer.mixing_parameters``, are ``fusion_weights``)."""
    kinds: dict[str, str] = {}
    heads = getattr(model, "heads", None)
    head_ids = {id(m) for m in heads.modules()} if isinstance(heads, nn.Module) else set()
    for module_name, module in model.named_modules():
        if isinstance(module, ADAPTER_MODULES):
            kind = "adapter"
        elif isinstance(module, FusionLayer):
            kind = "fusion"
        elif id(module) in head_ids and module is not heads:
            kind = "head"
        else:
            continue
        for param_name, _ in module.named_parameters():
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            mixing = kind == "fusion" and is_mixing(module, param_name)
            kinds.setdefault(full_name, "fusion_weights" if mixing else kind)
    for name, _ in model.named_parameters():
        kinds.setdefault(name, "base")
    return kinds


def is_mixing(module: nn.Module, param_name: str) -> bool:
    """Whether ``module``'s parameter ``param_name`` (dotted, maybe a submodule's) is one its owner lists in
    ``FusionLayer.mixing_parameters``."""
    owner, _, leaf = param_name.rpartition(".")
    return leaf in getattr(module.get_submodule(owner), "mixing_parameters", ())


def learning_rates(config: TrainingConfig) -> dict[str, float]:
    head = config.head_learning_rate or (
        config.base_learning_rate if config.full_finetune else config.adapter_learning_rate
    )
    return {
        "adapter": config.adapter_learning_rate,
        "fusion": config.fusion_learning_rate,
        "fusion_weights": config.fusion_weight_learning_rate or MIXING_RATE_FACTOR * config.fusion_learning_rate,
        "head": head,
        "base": config.base_learning_rate,
    }


class TimeBudgetCallback(transformers.TrainerCallback):
    """Stop training after ``minutes`` of wall time; evaluate and save the state it stopped at. On several
    processes all stop at the same step: at the first step at which any of them is over its budget."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60.0
        self.start = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if any_process(time.monotonic() - self.start > self.seconds, args.device):
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"


class EpochSeededLengthGroupedSampler(torch.utils.data.Sampler):
    """``LengthGroupedSampler`` order drawn from a generator seeded with ``seed + epoch``.

    transformers' own sampler shuffles with the global RNG when iteration starts; a resumed Trainer restores the
    global RNG of the checkpoint (taken mid-epoch) before that, so it drew another order and resuming did not
    replay the uninterrupted run. The Trainer calls ``set_epoch`` before each epoch.

    On ``processes`` processes the groups are made for the global batch (``inner.batch_size * processes``): every
    process draws this same order and takes its per-device batches of it in turn (accelerate's
    ``BatchSamplerShard``), so each step trains on the batch that 1 process with the global batch size would."""

    def __init__(self, inner: LengthGroupedSampler, seed: int, processes: int = 1) -> None:
        self.inner, self.seed, self.epoch, self.processes = inner, seed, 0, processes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Any:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        batch_size = self.inner.batch_size * self.processes
        return iter(get_length_grouped_indices(self.inner.lengths, batch_size, generator=generator))


class ModularTrainer(transformers.Trainer):
    """``transformers.Trainer`` with per-kind learning rates and trainable-only safetensors checkpoints."""

    def __init__(self, *args: Any, learning_rates: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_learning_rates = learning_rates or {}
        # our models return their batch's mean loss and take no num_items_in_batch; told otherwise (their forward
        # has **kwargs), the Trainer multiplies the loss by the number of processes: doubled gradients on 2
        self.model_accepts_loss_kwargs = False

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; on Ctrl-C, save a checkpoint of the last finished step first (its path goes on the
        ``KeyboardInterrupt`` as ``checkpoint``, None when nothing could be saved) and re-raise."""
        try:
            return super().train(*args, **kwargs)
        except KeyboardInterrupt as interrupt:
            interrupt.checkpoint = self._save_interrupted()  # type: ignore[attr-defined]
            raise

    def _save_interrupted(self) -> str | None:
        if self.state.global_step == 0 or not self.args.should_save:
            return None
        if self.args.world_size > 1:  # saving a checkpoint is collective (a barrier): other processes may be gone
            logger.warning("interrupted on %d processes: no checkpoint saved; resume from the last periodic one",
                           self.args.world_size)  # fmt: skip
            return None
        try:
            self._save_checkpoint(self.model, trial=None)
        except Exception as error:  # a failure here must not hide the interrupt itself
            logger.warning("interrupted, and the checkpoint could not be saved: %s", error)
            return None
        return str(Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}")

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        kinds = parameter_kind(model)
        decay_names = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((kinds[name], name in decay_names), []).append(parameter)
        param_groups = [
            {
                "params": params,
                "lr": self.group_learning_rates.get(kind, self.args.learning_rate),
                "weight_decay": self.args.weight_decay if decay else 0.0,
                "name": f"{kind}{'' if decay else '_no_decay'}",
            }
            for (kind, decay), params in sorted(groups.items())
        ]
        if not param_groups:
            raise ValueError("nothing to train: no parameter of the model requires grad")
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(param_groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        """The task loss, plus the fusion's regulariser (e.g. ``lambda * ||I - V||^2``) while training."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        regularizer = getattr(self.accelerator.unwrap_model(model), "regularization_loss", None)
        if not model.training or regularizer is None:
            return result
        penalty = regularizer()
        if penalty is None:
            return result
        if return_outputs:
            loss, outputs = result
            return loss + penalty.to(loss.dtype), outputs
        return result + penalty.to(result.dtype)

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's sampler, with length-grouped shuffles drawn from ``seed + epoch`` (see
        ``EpochSeededLengthGroupedSampler``) so that a resumed run replays the batches of the uninterrupted one."""
        sampler = super()._get_train_sampler(*args, **kwargs)
        if isinstance(sampler, LengthGroupedSampler) and sampler.generator is None:
            seed = self.args.data_seed or self.args.seed
            return EpochSeededLengthGroupedSampler(sampler, seed, max(1, self.args.world_size))
        return sampler

    def _get_eval_sampler(self, eval_dataset: Any, *args: Any, **kwargs: Any) -> Any:
        """Evaluate in dataset order on every transformers version: 4.57 groups evaluation batches by length when
        ``group_by_length`` is set, which reorders the predictions, and task types that decode per example
        (tagging, extractive QA) map prediction row i back to eval feature i."""
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)

    # ---------------------------------------------------------------- checkpoints: trainable weights only
    def _trainable_state(self, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The trainable entries of ``state_dict`` (default: the model's own; FSDP and DeepSpeed hand the Trainer's
        ``_save`` a gathered one)."""
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        state = self.model.state_dict() if state_dict is None else state_dict
        return {k: v for k, v in state.items() if k in names}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the trainable weights; only on the process that saves (rank 0 of several), as the Trainer asks."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        weights = self._trainable_state(state_dict)
        save_tensors(path / TRAINABLE_WEIGHTS, weights, metadata={"format": "pt"})
        write_json(path / "trainable_keys.json", sorted(weights))

    def _load_trainable(self, directory: str) -> None:
        weights = load_tensors(Path(directory) / TRAINABLE_WEIGHTS)
        expected = set(self._trainable_state())
        if set(weights) != expected:
            missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise ValueError(
                f"checkpoint {directory} does not match the model: missing {missing[:5]}, extra {extra[:5]}"
            )
        current = self._trainable_state()
        reshaped = [key for key in sorted(weights) if weights[key].shape != current[key].shape]
        if reshaped:
            key = reshaped[0]
            raise ValueError(
                f"checkpoint {directory} was trained with other shapes: {key} is {list(weights[key].shape)} there "
                f"and {list(current[key].shape)} now ({len(reshaped)} tensors differ); resume with the settings it "
                "was trained with (e.g. the same bottleneck size), or start without resume_from_checkpoint"
            )
        result = self.model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        self._load_trainable(resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """As the Trainer does, but on several CPU processes onto "cpu" (see ``_load_optimizer_state``), and an
        optimizer state saved with other parameter groups is refused in one line that names them."""
        try:
            self._load_optimizer_state(checkpoint)
        except ValueError as error:
            if "parameter group" not in str(error):
                raise
            saved = torch.load(Path(str(checkpoint)) / "optimizer.pt", map_location="cpu", weights_only=True)
            theirs = [group.get("name", "?") for group in saved.get("param_groups", [])]
            ours = [group.get("name", "?") for group in self.optimizer.param_groups]
            raise ValueError(
                f"checkpoint {checkpoint} holds optimizer state for the parameter groups {theirs} and this run "
                f"trains {ours} (a weighted fusion saved before its mixing weights had their own group, "
                "fusion_weights, or other settings); resume with the settings it was trained with, or start "
                "without resume_from_checkpoint"
            ) from None

    def _load_optimizer_state(self, checkpoint: str | None) -> None:
        """transformers 4.57 maps the optimizer state to ``args.device``, which on several CPU processes is
        "cpu:0", a location ``torch.load`` refuses (resuming crashed): load onto "cpu" there."""
        plain = not (self.is_deepspeed_enabled or self.is_fsdp_enabled)
        if checkpoint is None or self.args.world_size == 1 or self.args.device.type != "cpu" or not plain:
            return super()._load_optimizer_and_scheduler(checkpoint)
        optimizer, scheduler = Path(checkpoint) / "optimizer.pt", Path(checkpoint) / "scheduler.pt"
        if optimizer.is_file() and scheduler.is_file():
            self.optimizer.load_state_dict(torch.load(optimizer, map_location="cpu", weights_only=True))
            self.lr_scheduler.load_state_dict(torch.load(scheduler, map_location="cpu", weights_only=True))

    def _load_best_model(self) -> None:
        if self.state.best_model_checkpoint is not None:
            self._load_trainable(self.state.best_model_checkpoint)


def training_arguments(
    config: TrainingConfig,
    main_metric: str | None,
    greater_is_better: bool = True,
    *,
    loss_only: bool = False,
    eval_batch_size: int | None = None,
) -> Any:
    """``transformers.TrainingArguments`` from a ``TrainingConfig``. ``loss_only``: evaluation keeps the loss
    and drops the logits (for tasks scored after training, whose logits would only fill memory);
    ``eval_batch_size``: instead of ``config.eval_batch_size``."""
    strategy = "steps" if config.eval_steps else "epoch"
    kwargs: dict[str, Any] = dict(
        output_dir=config.output_dir,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=eval_batch_size or config.eval_batch_size,
        prediction_loss_only=loss_only,
        learning_rate=config.base_learning_rate if config.full_finetune else config.adapter_learning_rate,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        eval_strategy=strategy if main_metric else "no",
        save_strategy=strategy,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=config.load_best_model_at_end and main_metric is not None,
        metric_for_best_model=f"eval_{main_metric}" if main_metric else None,
        greater_is_better=greater_is_better,
        seed=config.seed,
        data_seed=config.seed,
        group_by_length=config.group_by_length,
        report_to="none",
        disable_tqdm=config.disable_tqdm,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        save_safetensors=True,
        remove_unused_columns=False,
        ddp_find_unused_parameters=config.ddp_find_unused_parameters,
    )
    # transformers 5 replaced group_by_length with train_sampling_strategy; 4.x has only the flag
    if not _accepts_argument("group_by_length") and _accepts_argument("train_sampling_strategy"):
        kwargs["train_sampling_strategy"] = "group_by_length" if config.group_by_length else "random"
    # transformers 5 takes a ratio in warmup_steps; 4.x has warmup_ratio
    kwargs["warmup_ratio" if _accepts_argument("warmup_ratio") else "warmup_steps"] = config.warmup_ratio
    if config.eval_steps:
        kwargs["eval_steps"] = config.eval_steps
        kwargs["save_steps"] = config.eval_steps
    return transformers.TrainingArguments(**{k: v for k, v in kwargs.items() if _accepts_argument(k)})


def _accepts_argument(name: str) -> bool:
    return name in transformers.TrainingArguments.__dataclass_fields__


def resolve_resume(config: TrainingConfig) -> str | None:
    """The checkpoint to resume from: the given one (refused when incomplete), or for 'last' the newest complete
    one in ``output_dir``; an incomplete newer one (a run killed while writing it) is skipped with a warning."""
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint != "last":
        problem = checkpoint_problem(Path(config.resume_from_checkpoint))
        if problem:
            raise ValueError(f"cannot resume from checkpoint {config.resume_from_checkpoint}: {problem}")
        return config.resume_from_checkpoint
    checkpoints = sorted(
        (p for p in Path(config.output_dir).glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    if not checkpoints:
        raise FileNotFoundError(f"resume_from_checkpoint='last' but {config.output_dir} holds no checkpoint-* folder")
    for checkpoint in reversed(checkpoints):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        logger.warning(f"skipping incomplete checkpoint {checkpoint}: {problem}")
    raise FileNotFoundError(f"resume_from_checkpoint='last' but no checkpoint in {config.output_dir} is complete")


def checkpoint_problem(directory: Path) -> str | None:
    """Why a Trainer checkpoint is unusable (None when it is complete): the Trainer writes trainer_state.json last,
    so a checkpoint whose state or weights do not read was cut off while being written."""
    if not directory.is_dir():
        return "it does not exist"
    state = directory / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is cut off"
    try:
        with safe_open(str(directory / TRAINABLE_WEIGHTS), framework="pt") as weights:
            weights.keys()
    except FileNotFoundError:
        return f"{TRAINABLE_WEIGHTS} is missing"
    except Exception as error:  # safetensors raises its own error type for a truncated header
        return f"{TRAINABLE_WEIGHTS} does not read ({error})"
    return None


def write_run_record(directory: Path, record: dict[str, Any]) -> None:
    write_json(directory / "run.json", json.loads(json.dumps(record, default=str)))


__all__ = ["ModularTrainer", "TimeBudgetCallback", "learning_rates", "parameter_kind", "training_arguments"]
