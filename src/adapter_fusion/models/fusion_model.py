"""``FusionModel``: a base model, the adapters it fuses, a fusion in the chosen layers, and a head per task.

model = FusionModel.from_adapters(["adapters/sst2", "adapters/mnli", "adapters/rte"],
                                  FusionConfig(fusion_method="attention"))
model.add_classification_head("rte", 2)
out = model(**batch, return_fusion_weights=True)   # out.fusion_weights: {point: [batch, seq, n_adapters]}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion import Fuse, FusionConfig, add_fusion, remove_fusion, train_fusion
from adapter_fusion.fusion.continual import extend_fusion, running_task, train_extension
from adapter_fusion.fusion.hierarchy import HierarchicalFuse, HierarchyConfig, add_hierarchy
from adapter_fusion.fusion.saving import open_fusion, restore_fusion, save_fusion
from adapter_fusion.hub_upload import push_model
from adapter_fusion.interop.adapterhub import is_adapterhub_fusion
from adapter_fusion.interop.adapterhub_fusion import adapterhub_fusion_adapters, add_adapterhub_fusion
from adapter_fusion.manifest import Opened, check_base
from adapter_fusion.models.loading import load_base_model
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.model import AdapterModel
from adapter_fusion.models.saving import base_model_arguments, load_adapter, model_identity, read_adapter_config
from adapter_fusion.tasks import get_task_type
from adapter_fusion.tasks.mixed import task_spec


@dataclass
class FusionModelOutput(SequenceClassifierOutput):
    """``SequenceClassifierOutput`` plus ``fusion_weights``: per fused point ``[batch, seq, n_adapters]``
    (``[batch, seq, heads, n_adapters]`` for multi-head attention), when asked for."""

    fusion_weights: dict[str, torch.Tensor] | None = None


class FusionModel(AdapterModel):
    """An ``AdapterModel`` whose adapters run through a fusion (``self.fusion``) instead of being stacked.

    Besides ``FusionModel(base_model)`` / ``from_pretrained`` / ``from_adapters``, the documented form
    ``FusionModel(model_config=..., fusion_config=..., adapter_manager=...)`` loads the base model
    ``model_config`` names (default: the one the manager's adapters were trained on), attaches the manager's
    adapters, builds the fusion over them (``fusion_config.adapter_names``, default all) and adds a
    classification head per ``model_config.task_names``.
    """

    def __init__(
        self,
        base: nn.Module | None = None,
        name_or_path: str | None = None,
        *,
        model_config: Any = None,
        fusion_config: FusionConfig | None = None,
        adapter_manager: AdapterManager | None = None,
    ) -> None:
        if base is None:
            if model_config is None and adapter_manager is None:
                raise TypeError("FusionModel needs a base model, or model_config= / adapter_manager=")
            name = getattr(model_config, "model_name_or_path", None)
            if name in (None, "", "default") and adapter_manager is not None:
                name = adapter_manager.base_model_name or name
            base, name_or_path = load_base_model(name)
        super().__init__(base, name_or_path)
        if adapter_manager is not None:
            self.adopt_adapters(adapter_manager)
        if fusion_config is not None or adapter_manager is not None:
            config = fusion_config or FusionConfig()
            if not config.adapter_names and not config.adapter_paths:
                config = config.replace(adapter_names=tuple(self.adapters.list_adapters()))
            self.add_fusion(config)
        for task in getattr(model_config, "task_names", ()) or ():
            spec = task_spec(task, None, model_config.num_labels)
            self.add_head(spec.name, get_task_type(spec).head_config(spec, model_config.pooling), activate=False)

    def adopt_adapters(self, manager: AdapterManager) -> None:
        """Attach the adapters of a (detached) ``AdapterManager`` to this model, under their names."""
        mine = (self.adapters.hidden_size, self.adapters.num_layers)
        if manager.list_adapters() and (manager.hidden_size, manager.num_layers) != mine:
            raise ValueError(f"the manager's adapters are for hidden size {manager.hidden_size} and "
                             f"{manager.num_layers} layers; the model has {mine[0]} and {mine[1]}")  # fmt: skip
        reference = next(self.base.parameters())
        for name in manager.list_adapters():
            if name in self.adapters:
                raise ValueError(f"the model already has an adapter named {name!r}")
            self.adapters.adapters[name] = manager.adapters[name].to(device=reference.device, dtype=reference.dtype)
            self.adapters.configs[name] = manager.configs[name]

    @classmethod
    def from_adapters(
        cls,
        adapter_paths: Sequence[str | Path],
        config: FusionConfig | None = None,
        model: str | None = None,
        *,
        allow_modified: bool = False,
        allow_other_base: bool = False,
        **model_kwargs: Any,
    ) -> FusionModel:
        """Load the base model the first adapter was trained on (or ``model``), the adapters, and the fusion.

        The base model is loaded as a causal LM when the adapter was saved from one; ``model_kwargs`` go to
        ``from_pretrained`` (e.g. ``causal_lm=True``, ``dtype=...``) and win over what the adapter recorded.
        An adapter saved on another base model (other weights or config) is refused unless ``allow_other_base``;
        one whose files differ from its manifest unless ``allow_modified`` (see ``load_adapter``)."""
        if not adapter_paths:
            raise ValueError("from_adapters needs at least one adapter directory; got none")
        info = read_adapter_config(adapter_paths[0], allow_modified=allow_modified)
        fusion_model = cls.from_pretrained(
            model or info.get("base_model"), **{**base_model_arguments(info), **model_kwargs}
        )
        config = (config or FusionConfig()).replace(adapter_paths=tuple(str(p) for p in adapter_paths))
        add_fusion(fusion_model, config, allow_modified=allow_modified, allow_other_base=allow_other_base)
        return fusion_model

    @classmethod
    def from_adapterhub(
        cls,
        fusion_directory: str | Path,
        adapter_paths: Sequence[str | Path] | None = None,
        model: str | None = None,
        **model_kwargs: Any,
    ) -> FusionModel:
        """An AdapterHub AdapterFusion directory (``adapter_fusion_config.json`` + weights) with its adapters
        (``adapter_paths``, else the sibling directories named after them) on ``model`` (default: the base model
        the first adapter recorded). See ``adapter_fusion.interop.adapterhub``."""
        adapters = adapterhub_fusion_adapters(fusion_directory, adapter_paths)
        info = read_adapter_config(adapters[0][1])
        fusion_model = cls.from_pretrained(model or info.get("base_model"), **model_kwargs)
        for name, path in adapters:
            load_adapter(fusion_model, path, name, load_head=False, activate=False)
        add_adapterhub_fusion(fusion_model, fusion_directory)
        return fusion_model.eval()

    @property
    def fusion(self) -> Fuse | None:
        composition = self.adapters.composition
        return composition if isinstance(composition, Fuse) else None

    def add_fusion(self, config: FusionConfig) -> Fuse:
        """Build the fusion ``config`` describes (loading its ``adapter_paths``) and make it active."""
        if self.fusion is not None:
            raise ValueError(f"this model already has fusion {self.fusion.name!r}; remove_fusion() first")
        return add_fusion(self, config)

    def remove_fusion(self) -> None:
        remove_fusion(self)

    def add_hierarchy(self, hierarchy: HierarchyConfig) -> HierarchicalFuse:
        """Fuse adapters and fusions of them, to any depth (see ``fusion.hierarchy``); becomes the model's fusion."""
        return add_hierarchy(self, hierarchy)

    def extend_fusion(self, adapter: str | Path, *, name: str | None = None, task: str | None = None) -> str:
        """Add a new task's adapter to the trained fusion; old tasks' outputs stay bit-identical (see
        ``fusion.continual``). Returns the adapter's name."""
        return extend_fusion(self, adapter, name=name, task=task)

    def train_extension(self, task: str) -> None:
        """Train only ``task``'s gates over the added adapters and its head (see ``fusion.continual``)."""
        train_extension(self, task)

    def _require_fusion(self) -> Fuse:
        if self.fusion is None:
            raise ValueError("this model has no fusion: call add_fusion(FusionConfig(...)) first")
        return self.fusion

    def train_fusion(self, head: str | None = None, *, freeze_adapters: bool | None = None) -> None:
        """Make the fusion and ``head`` trainable; the base model stays frozen; the adapters stay frozen
        (sequential training) unless ``freeze_adapters`` is False or the config says so (joint training)."""
        fuse = self._require_fusion()
        self.freeze_base(True)
        for name in self.adapters.list_adapters():
            self.adapters.freeze(name)
        train_fusion(self, fuse, freeze_adapters=freeze_adapters)
        head = self._check_head(head)
        for head_name, module in self.heads.items():
            for parameter in module.parameters():
                parameter.requires_grad_(head_name == head)
        self.active_head = head

    def get_fusion_parameters(self) -> list[nn.Parameter]:
        return list(self._require_fusion().parameters())

    def get_adapter_parameters(self, names: Iterable[str] | None = None) -> list[nn.Parameter]:
        names = list(names) if names is not None else list(self._require_fusion().adapter_names)
        return [p for name in names for p in self.adapters.adapters[name].parameters()]

    def regularization_loss(self) -> torch.Tensor | None:
        fuse = self.fusion
        return fuse.regularization_loss() if fuse is not None else None

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        adapter_names: Iterable[str] | str | None = None,
        head: str | None = None,
        return_fusion_weights: bool = False,
        **kwargs: Any,
    ) -> FusionModelOutput:
        fuse = self.fusion
        subset = self._fused_subset(adapter_names)
        adapter_names = None if fuse is not None else adapter_names
        with running_task(fuse, head if head is not None else self.active_head), self._restricted(subset):
            return self._forward(
                input_ids, attention_mask, token_type_ids, labels, adapter_names, head, return_fusion_weights, **kwargs
            )

    def _forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        labels: torch.Tensor | None,
        adapter_names: Iterable[str] | str | None,
        head: str | None,
        return_fusion_weights: bool,
        **kwargs: Any,
    ) -> FusionModelOutput:
        if return_fusion_weights:
            fuse = self._require_fusion()
            with fuse.record_weights() as weights:
                output = super().forward(
                    input_ids, attention_mask, token_type_ids, labels, adapter_names, head, **kwargs
                )
                collected = dict(weights)
        else:
            output = super().forward(input_ids, attention_mask, token_type_ids, labels, adapter_names, head, **kwargs)
            collected = None
        return FusionModelOutput(
            loss=output.loss, logits=output.logits, hidden_states=output.hidden_states, fusion_weights=collected
        )

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        adapter_names: Iterable[str] | str | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """``AdapterModel.generate`` through the fusion (``adapter_names``: a subset of the fused adapters)."""
        fuse = self.fusion
        if fuse is None:
            return super().generate(input_ids, attention_mask, adapter_names, **generate_kwargs)
        with running_task(fuse, self.active_head), self._restricted(self._fused_subset(adapter_names)):
            return super().generate(input_ids, attention_mask, None, **generate_kwargs)

    def _restricted(self, subset: list[str] | None) -> Any:
        """Run only ``subset`` of the fused adapters inside the block (all: None)."""
        if subset is None:
            return nullcontext()
        restricted = getattr(self.fusion, "restricted", None)
        if restricted is None:
            raise ValueError(f"fusion {self.fusion.name!r} cannot run a subset of its inputs; got {subset}")
        return restricted(subset)

    def _fused_subset(self, adapter_names: Iterable[str] | str | None) -> list[str] | None:
        """With a fusion, ``adapter_names`` picks which fused adapters run (all of them: None); names outside the
        fusion raise ``ValueError`` listing the fused ones."""
        fuse = self.fusion
        if adapter_names is None or fuse is None:
            return None
        requested = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        unknown = [name for name in requested if name not in fuse.adapter_names]
        if unknown or not requested or len(set(requested)) != len(requested):
            raise ValueError(
                f"adapter_names {requested} must be distinct adapters of fusion {fuse.name!r}: "
                f"{list(fuse.adapter_names)}; remove_fusion() to run other adapters"
            )
        return None if sorted(requested) == sorted(fuse.adapter_names) else requested

    def save_fusion(
        self, directory: str | Path, heads: Iterable[str] | None = None, *, overwrite: bool = False, **metadata: Any
    ) -> Path:
        """Write the whole setup (fusion, the adapters it fuses, heads) to ``directory``; see ``fusion.saving``."""
        return save_fusion(self, directory, heads=heads, metadata=metadata, overwrite=overwrite)

    def save_pretrained(  # type: ignore[override]
        self, directory: str | Path, heads: Iterable[str] | None = None, *, overwrite: bool = False, **metadata: Any
    ) -> Path:
        """``save_fusion`` (with its model card, ``README.md``)."""
        return self.save_fusion(directory, heads, overwrite=overwrite, **metadata)

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        heads: Iterable[str] | None = None,
        *,
        directory: str | Path | None = None,
        private: bool | None = None,
        token: str | None = None,
    ) -> str:
        """Upload the fusion (as ``save_pretrained`` saves it; or the already saved ``directory``) to the Hub
        repository ``repo_id``, created when missing; returns its URL (see ``hub``)."""
        return push_model(lambda path: self.save_fusion(path, heads), repo_id, directory, "fusion",
                          private=private, token=token)  # fmt: skip

    @classmethod
    def load_fusion(cls, directory: str | Path, model: str | None = None, **options: bool) -> FusionModel:
        """``load_fusion`` below (``options``: ``allow_modified``, ``allow_other_base``); ``directory``: a
        path or a Hub id."""
        directory = resolve_artefact(directory)
        if is_adapterhub_fusion(directory):
            return cls.from_adapterhub(directory, model=model)
        return load_fusion(directory, model=model, **options)

    def print_model_info(self) -> str:
        text = super().print_model_info()
        fuse = self.fusion
        if fuse is not None:
            count = sum(p.numel() for p in fuse.parameters())
            method = fuse.config.fusion_method if fuse.config is not None else "?"
            extra = (
                f"fusion {fuse.name!r} ({method}) over {list(fuse.adapter_names)} at {len(fuse.layers)} points: "
                f"{count:,} parameters"
            )
            print(extra)
            text += "\n" + extra
        return text


def load_fusion(
    directory: str | Path,
    model: str | None = None,
    *,
    allow_modified: bool = False,
    allow_other_base: bool = False,
    opened: Opened | None = None,
) -> FusionModel:
    """A ``FusionModel`` rebuilt from the fusion directory ``directory`` (see ``fusion.saving``): same adapters (by
    name and order), fusion, temperature, heads.

    ``model``: another base model than the recorded one, refused unless it is the same (same weights and config)
    or ``allow_other_base``; a file that differs from the manifest is refused unless ``allow_modified``.
    ``opened``: what ``open_fusion(directory)`` returned to a caller that has already checked the files (they are
    not hashed again)."""
    directory = resolve_artefact(directory)
    info, manifest = opened if opened is not None else open_fusion(directory, allow_modified=allow_modified)
    fusion_model = FusionModel.from_pretrained(model or info.get("base_model"), **base_model_arguments(info))
    if manifest is not None:
        check_base(
            manifest["base_model"], model_identity(fusion_model), f"fusion at {directory}",
            allow_other_base=allow_other_base,
        )  # fmt: skip
    return restore_fusion(fusion_model, directory, info)
