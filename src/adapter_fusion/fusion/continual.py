"""Continual fusion: add a new task's adapter to a trained fusion without changing what old tasks compute.

    model = FusionModel.load_fusion("fusions/sst2")          # trained for task (head) "sst2"
    model.extend_fusion("adapters/rte")                       # adapter + its head, task "rte"
    model.train_extension("rte")                              # only the new gates and the rte head train

Why not widen each method's own weights (a new attention column with a -inf logit, a zero weight in weighted
fusion): a packed matmul over N + 1 adapters does not round like the one over N (the reduction order changes
with the shapes), so old outputs would be close, not bit-identical. Here the trained fusion layer stays as it
is (``ExtendedFusion.base``, over the old adapters) and the added adapters join through per-task gates::

    out = base(h, old adapters) + sum_j g_j(h) up_j      g = W_t h + b_t for the running task t, else nothing

Each extension adds a gate ``W_t, b_t`` (zero at start, so the sum is exactly 0) over every adapter added so
far, used only while that task's head runs (``FusionModel.forward`` sets the running task). A task that was
there before an extension never runs the new gates: its outputs stay bit-identical through extending,
training the new task and saving/reloading (per-task fusion parameters, so "exactly" rather than "within a
tolerance"). The new task sees the old fusion plus its own gated adapters, so it reuses what was learnt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.fusion.base import FusionLayer, FusionOutput
from adapter_fusion.fusion.composition import Fuse, point_inputs
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.models.saving import load_adapter, read_adapter_config, recorded_model_name

if TYPE_CHECKING:
    from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
    from adapter_fusion.models.fusion_model import FusionModel


class TaskScope:
    """Which task (head) the model is running; shared by a ``TaskFuse`` and its extended layers (not state)."""

    def __init__(self) -> None:
        self.task: str | None = None


class ExtendedFusion(FusionLayer):
    """A trained fusion layer over ``num_base`` adapters plus ``num_added`` adapters joined by per-task gates.

    ``forward`` gets the ``num_base + num_added`` adapters of the point, base ones first. Weights, when asked
    for: the base layer's ``[..., num_base]`` then the running task's gates ``[..., num_added]`` (zero for adapters
    its gate does not cover, and for tasks without a gate).
    """

    def __init__(self, base: FusionLayer, num_added: int, scope: TaskScope) -> None:
        super().__init__(base.hidden_size, base.num_adapters + num_added, base.temperature)
        self.base = base
        self.num_base = base.num_adapters
        self.num_added = num_added
        self.num_heads = base.num_heads
        self.gates = nn.ModuleDict()
        self.scope = scope

    @property
    def normalized(self) -> bool:
        return False

    def add_gate(self, task: str, width: int) -> nn.Linear:
        """A zero gate of the first ``width`` added adapters for ``task``."""
        if not 1 <= width <= self.num_added:
            raise ValueError(f"a gate covers 1..{self.num_added} added adapters; got {width}")
        reference = next(self.base.parameters(), None)
        gate = nn.Linear(self.hidden_size, width)
        nn.init.zeros_(gate.weight)
        nn.init.zeros_(gate.bias)
        if reference is not None:
            gate.to(device=reference.device, dtype=reference.dtype)
        self.gates[task] = gate
        return gate

    def set_temperature(self, temperature: float) -> None:
        super().set_temperature(temperature)
        if "base" in self._modules:
            self.base.set_temperature(temperature)

    def regularization_loss(self) -> torch.Tensor:
        return self.base.regularization_loss()

    def forward(
        self,
        hidden: torch.Tensor,
        adapters: Sequence[BottleneckAdapter | LoraAdapter],
        ffn_input: torch.Tensor | None = None,
        *,
        reads_ffn_input: Sequence[bool] | None = None,
        residual: bool = True,
        return_weights: bool = False,
        module_input: torch.Tensor | None = None,
    ) -> FusionOutput:
        if len(adapters) != self.num_adapters:
            raise ValueError(f"this fusion layer fuses {self.num_adapters} adapters; got {len(adapters)}")
        reads = list(reads_ffn_input) if reads_ffn_input is not None else [False] * len(adapters)
        n = self.num_base
        out = self.base(hidden, adapters[:n], ffn_input, reads_ffn_input=reads[:n], residual=residual,
                        return_weights=return_weights, module_input=module_input)  # fmt: skip
        task = self.scope.task
        gate = self.gates[task] if task is not None and task in self.gates else None
        lead = hidden.shape[:-1]
        if gate is None:
            if not return_weights:
                return out
            return FusionOutput(out.hidden, self._with_gates(out.weights, hidden.new_zeros(*lead, 0)))
        width = gate.out_features
        pack = AdapterPack(adapters[n : n + width], reads[n : n + width], self.hidden_size)
        h = hidden.reshape(-1, self.hidden_size)
        x = ffn_input.reshape(-1, self.hidden_size) if ffn_input is not None and pack.any_reads_ffn_input else None
        m = module_input.reshape(-1, module_input.shape[-1]) if module_input is not None else None
        activations = pack.activate(pack.down(h, x, m, pack.down_products()))
        g = F.linear(h, gate.weight, gate.bias)  # [T, width]
        delta = F.linear(torch.cat([pack.scale(activations, g), g], dim=-1), pack.up_columns())
        fused = out.hidden + delta.view_as(hidden)
        if not return_weights:
            return FusionOutput(fused, None)
        return FusionOutput(fused, self._with_gates(out.weights, g.view(*lead, width)))

    def _with_gates(self, weights: torch.Tensor | None, gates: torch.Tensor) -> torch.Tensor:
        assert weights is not None
        padded = F.pad(gates, (0, self.num_added - gates.shape[-1]))
        if weights.dim() == padded.dim() + 1:  # multi-head base weights [..., heads, N]
            padded = padded.unsqueeze(-2).expand(*weights.shape[:-1], self.num_added)
        return torch.cat([weights, padded], dim=-1)

    def extra_repr(self) -> str:
        return f"base adapters={self.num_base}, added={self.num_added}, gates={list(self.gates)}"


class TaskFuse(Fuse):
    """A ``Fuse`` extended by continual learning: ``base_adapter_names`` are the originally fused adapters,
    ``extensions`` the ``(task, added adapter names)`` records in order, ``scope`` the running task."""

    def __init__(
        self,
        name: str,
        adapter_names: Sequence[str],
        layers: dict[str, FusionLayer],
        point_adapters: dict[str, Sequence[str]],
        config: Any,
        base_adapter_names: Sequence[str],
        extensions: Sequence[tuple[str, tuple[str, ...]]],
        scope: TaskScope,
    ) -> None:
        super().__init__(name, adapter_names, layers, point_adapters, config)
        self.base_adapter_names = tuple(base_adapter_names)
        self.extensions = [(task, tuple(names)) for task, names in extensions]
        self.scope = scope

    @contextmanager
    def running(self, task: str | None) -> Iterator[None]:
        previous = self.scope.task
        self.scope.task = task
        try:
            yield
        finally:
            self.scope.task = previous

    def tasks(self) -> list[str]:
        return [task for task, _ in self.extensions]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, extensions={self.extensions}"


def running_task(fuse: Fuse | None, task: str | None) -> AbstractContextManager[None]:
    """Run ``fuse`` for ``task`` (a no-op for fusions that were never extended)."""
    return fuse.running(task) if isinstance(fuse, TaskFuse) else nullcontext()


def continual_info(fuse: Fuse) -> dict[str, Any]:
    """What ``save_fusion`` records beside the config (nothing for a fusion never extended)."""
    if not isinstance(fuse, TaskFuse):
        return {}
    return {
        "base_adapter_names": list(fuse.base_adapter_names),
        "extensions": [{"task": task, "adapters": list(names)} for task, names in fuse.extensions],
    }


# --------------------------------------------------------------------------------------------------- extending
def extend_fusion(model: FusionModel, adapter: str | Path, *, name: str | None = None, task: str | None = None) -> str:
    """Add ``adapter`` (a saved adapter directory, or the name of an adapter already in the model but not fused)
    to ``model``'s fusion for a new task ``task`` (default: the adapter's name); returns the adapter's name.

    A saved adapter must come from the fusion's base model (same recorded base model and geometry); its head, if
    saved, becomes the task's head. Refused: a name already in the model, a task that already has a head or a
    gate, adapters whose residual flags differ from the fused ones."""
    fuse = model._require_fusion()
    manager = model.adapters
    directory = Path(adapter)
    in_model = isinstance(adapter, str) and adapter in manager and not directory.exists()
    if in_model:
        name = name or str(adapter)
        if name != adapter:
            raise ValueError(f"name={name!r} can only rename a saved adapter; {adapter!r} is already in the model")
        if name in fuse.adapter_names:
            raise ValueError(f"adapter {name!r} is already fused ({list(fuse.adapter_names)}); extend with a new one")
    else:
        info = read_adapter_config(directory)
        recorded, ours = info.get("base_model"), recorded_model_name(model.name_or_path)
        if recorded != ours:
            raise ValueError(
                f"adapter at {directory} was trained on base model {recorded!r}; this fusion's base model is "
                f"{ours!r}: extend only with adapters of the same base model"
            )
        name = name or info["name"]
        if name in manager:
            raise ValueError(
                f"an adapter named {name!r} is already in the model (fused: {list(fuse.adapter_names)}); "
                "pass name=... to add it under another name"
            )
    task = task or name
    if task in model.heads or (isinstance(fuse, TaskFuse) and task in fuse.tasks()):
        raise ValueError(
            f"task {task!r} already has a head ({list(model.heads)}); extending adds a new task: pass task=..."
        )
    if not task or "." in task:
        raise ValueError(f"task must be a non-empty name without dots; got {task!r}")
    if not in_model:
        load_adapter(model, directory, name, load_head=True, activate=False)
        if name in model.heads and task != name:
            model.heads[task] = model.heads.pop(name)
    try:
        point_inputs(manager, (*fuse.adapter_names, name))  # mixed residual flags -> ValueError
        manager.composition = extended(fuse, manager, name, task)
    except Exception:
        if not in_model:  # leave the model as it was
            manager.remove_adapter(name)
            if task in model.heads:
                del model.heads[task]
        raise
    return name


def extended(fuse: Fuse, manager: Any, name: str, task: str) -> TaskFuse:
    """A ``TaskFuse`` equal to ``fuse`` plus adapter ``name`` behind a new zero gate for ``task``."""
    if isinstance(fuse, TaskFuse):
        base_names, records, scope = fuse.base_adapter_names, list(fuse.extensions), fuse.scope
    else:
        base_names, records, scope = fuse.adapter_names, [], TaskScope()
    records.append((task, (name,)))
    added = [n for _, names in records for n in names]
    layers: dict[str, FusionLayer] = {}
    point_adapters: dict[str, tuple[str, ...]] = {}
    for key, layer in fuse.fusion_layers().items():
        index, location = key.split("_", 1)
        base_layer = layer.base if isinstance(layer, ExtendedFusion) else layer
        base_here = tuple(n for n in fuse.point_adapters[key] if n in base_names)
        added_here = [n for n in added if manager.adapter_module(n, int(index), location) is not None]
        point_adapters[key] = (*base_here, *added_here)
        if not added_here:
            layers[key] = base_layer
            continue
        new = ExtendedFusion(base_layer, len(added_here), scope)
        seen: set[str] = set()
        for record_task, names in records:
            seen.update(names)
            width = sum(1 for n in added_here if n in seen)
            if width == 0:
                continue
            if isinstance(layer, ExtendedFusion) and record_task in layer.gates:
                new.gates[record_task] = layer.gates[record_task]  # the same module: trained gates carry over
            else:
                new.add_gate(record_task, width)
        new.train(fuse.training)
        layers[key] = new
    return TaskFuse(
        fuse.name, (*fuse.adapter_names, name), layers, point_adapters, fuse.config, base_names, records, scope
    )


def rebuild_extensions(model: FusionModel, records: Sequence[dict[str, Any]]) -> Fuse:
    """Re-apply saved extension records (their adapters already loaded) to the model's fusion; for loading."""
    for record in records:
        fuse = model._require_fusion()
        for name in record["adapters"]:
            model.adapters.composition = extended(fuse, model.adapters, name, record["task"])
    return model._require_fusion()


def train_extension(model: FusionModel, task: str) -> None:
    """Make only ``task``'s gates and head trainable (base model, adapters, the trained fusion and other heads
    frozen), and make ``task``'s head the active one."""
    fuse = model._require_fusion()
    if not isinstance(fuse, TaskFuse) or task not in fuse.tasks():
        tasks = fuse.tasks() if isinstance(fuse, TaskFuse) else []
        raise ValueError(f"no extension for task {task!r}; extended tasks: {tasks or 'none'} (extend_fusion first)")
    head = model._check_head(task)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in fuse.fusion_layers().values():
        if isinstance(layer, ExtendedFusion) and task in layer.gates:
            layer.gates[task].requires_grad_(True)
    model.heads[head].requires_grad_(True)
    model.active_head = head
