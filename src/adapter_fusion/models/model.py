"""``AdapterModel``: a Hugging Face model + named adapters (``AdapterManager``) + named task heads."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.heads import HeadConfig, build_head, head_inputs
from adapter_fusion.hub_upload import push_model
from adapter_fusion.models.loading import load_base_model
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.saving import save_adapter


class AdapterModel(nn.Module):
    """A frozen (or not) base model with adapters attached by hooks and a head per task.

    ``forward(input_ids, attention_mask, ..., labels=None, adapter_names=None, head=None)`` returns a
    ``SequenceClassifierOutput`` whose ``loss`` is set when ``labels`` are given.

    A causal LM (``from_pretrained(name, causal_lm=True)``) stays whole in ``self.base``: adapters attach to its
    decoder (``base.base_model``), a ``causal_lm`` head uses its own LM head's logits, and ``generate()`` runs its
    native ``generate`` with the adapters (or the fusion) applied.
    """

    def __init__(self, base: nn.Module, name_or_path: str | None = None) -> None:
        super().__init__()
        self.base = base
        self.name_or_path = name_or_path or getattr(base.config, "_name_or_path", None)
        self.adapters = AdapterManager(base)
        self.heads = nn.ModuleDict()
        self.active_head: str | None = None
        self._base_accepts = set(inspect.signature(base.forward).parameters)
        self._body_accepts = set(inspect.signature(self.body.forward).parameters)

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, **kwargs: Any) -> AdapterModel:
        base, resolved = load_base_model(name_or_path, **kwargs)
        return cls(base, resolved)

    @property
    def config(self) -> Any:
        return self.base.config

    @property
    def hidden_size(self) -> int:
        return self.adapters.hidden_size

    @property
    def body(self) -> nn.Module:
        """The transformer without a task head (``base.base_model``; ``base`` itself for an ``AutoModel``)."""
        return getattr(self.base, "base_model", self.base)

    @property
    def is_causal_lm(self) -> bool:
        """Whether ``base`` is a causal LM with its LM head (loaded with ``causal_lm=True``): it can generate."""
        can_generate = getattr(self.base, "can_generate", None)
        output_embeddings = getattr(self.base, "get_output_embeddings", None)
        if not (callable(can_generate) and callable(output_embeddings)):
            return False
        return bool(can_generate()) and output_embeddings() is not None

    # ----------------------------------------------------------------- adapters (thin conveniences)
    def add_adapter(self, name: str, config: AdapterConfig | None = None, activate: bool = True) -> None:
        self.adapters.add_adapter(name, config, activate=activate)

    def set_active_adapters(self, *names: str) -> None:
        self.adapters.set_active(*names)

    # ----------------------------------------------------------------- heads
    def add_head(self, name: str, config: HeadConfig, *, activate: bool = True) -> nn.Module:
        if name in self.heads:
            raise ValueError(f"a head named {name!r} already exists; existing: {list(self.heads)}")
        head = build_head(config, self.hidden_size)
        if getattr(head, "uses_lm_logits", False) and not self.is_causal_lm:
            raise ValueError(
                f"head type {config.head_type!r} uses the LM head of a causal LM, but the base model is a "
                f"{type(self.base).__name__}; load it with AdapterModel.from_pretrained(name, causal_lm=True)"
            )
        reference = next(self.base.parameters())
        head.to(device=reference.device, dtype=reference.dtype)
        head.train(self.training)
        self.heads[name] = head
        if activate:
            self.active_head = name
        return head

    def add_classification_head(
        self,
        name: str,
        num_labels: int = 2,
        label_names: Iterable[str] = (),
        pooling: str = "cls",
        problem_type: str = "single_label_classification",
        task: str | None = None,
        dropout: float = 0.1,
    ) -> nn.Module:
        config = HeadConfig(
            head_type="classification",
            num_labels=num_labels,
            label_names=tuple(label_names),
            pooling=pooling,
            problem_type=problem_type,
            task=task,
            dropout=dropout,
        )
        return self.add_head(name, config)

    def head_config(self, name: str) -> HeadConfig:
        self._check_head(name)
        return self.heads[name].config  # type: ignore[return-value]

    def _check_head(self, name: str | None) -> str:
        if name is None:
            if self.active_head is None:
                raise ValueError("no head: add one with add_head(...) or pass head=NAME")
            name = self.active_head
        if name not in self.heads:
            raise KeyError(f"no head named {name!r}; available: {list(self.heads) or 'none'}")
        return name

    # ----------------------------------------------------------------- training helpers
    def freeze_base(self, frozen: bool = True) -> None:
        for parameter in self.base.parameters():
            parameter.requires_grad_(not frozen)

    def train_adapter(self, name: str, head: str | None = None) -> None:
        """Freeze everything but adapter ``name`` and its head; activate them."""
        self.freeze_base(True)
        for other in self.adapters.list_adapters():
            self.adapters.freeze(other, other != name)
        self.adapters.set_active(name)
        head = self._check_head(head or name)
        for head_name, module in self.heads.items():
            for parameter in module.parameters():
                parameter.requires_grad_(head_name == head)
        self.active_head = head

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ----------------------------------------------------------------- forward
    def encode(
        self, adapter_names: Iterable[str] | str | None = None, *, lm_logits: bool = False, **inputs: Any
    ) -> Any:
        """Run the transformer (with the active or given adapters, or the fusion); returns its output, with
        ``last_hidden_state [batch, seq, hidden]``. ``lm_logits=True`` runs the whole causal LM instead (its
        output has ``logits [batch, seq, vocab]``); without it a causal LM's LM head is not computed."""
        if lm_logits and not self.is_causal_lm:
            raise ValueError(
                f"lm_logits=True needs a causal LM (from_pretrained(name, causal_lm=True)); "
                f"the base model is a {type(self.base).__name__}"
            )
        module, accepts = (self.base, self._base_accepts) if lm_logits else (self.body, self._body_accepts)
        kwargs = {k: v for k, v in inputs.items() if v is not None and k in accepts}
        if "use_cache" in accepts:
            kwargs.setdefault("use_cache", False)  # a forward pass keeps no key/value cache (generate() does)
        context = self.adapters.using(adapter_names) if adapter_names is not None else nullcontext()
        with context:
            return module(**kwargs, return_dict=True)

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        adapter_names: Iterable[str] | str | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """The causal LM's own ``generate`` with the given adapters (default: the active ones, or the fusion)
        applied at every step; returns what it returns (by default the token ids ``[batch, prompt + new]``).

        ``generate_kwargs`` go to ``transformers``' ``generate`` (``max_new_tokens``, ``do_sample``, ...). Left-pad
        batched prompts. The model's train/eval mode is left as it is: call ``eval()`` first.
        """
        if not self.is_causal_lm:
            raise ValueError(
                f"generate() needs a causal LM (AdapterModel.from_pretrained(name, causal_lm=True)); "
                f"the base model is a {type(self.base).__name__}"
            )
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        context = self.adapters.using(adapter_names) if adapter_names is not None else nullcontext()
        with context:
            return self.base.generate(**{k: v for k, v in inputs.items() if v is not None}, **generate_kwargs)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        adapter_names: Iterable[str] | str | None = None,
        head: str | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        head_name = self._check_head(head)
        choices = None
        if input_ids is not None and input_ids.dim() == 3:  # multiple choice: [batch, choices, seq] -> [b * c, seq]
            choices = input_ids.shape[:2]
            input_ids, attention_mask, token_type_ids = (
                None if t is None else t.flatten(0, 1) for t in (input_ids, attention_mask, token_type_ids)
            )
        head_module = self.heads[head_name]
        # inputs some heads read beside the hidden states (a tagging head's casing_ids): never passed to the base
        extra = {name: kwargs.pop(name) for name in head_inputs() if name in kwargs}
        wanted = {k: v for k, v in extra.items() if k in getattr(head_module, "extra_inputs", ())}
        lm_logits = bool(getattr(head_module, "uses_lm_logits", False))  # the causal_lm head: logits computed once
        outputs = self.encode(
            adapter_names,
            lm_logits=lm_logits,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        logits = head_module(outputs.logits if lm_logits else outputs.last_hidden_state, attention_mask, **wanted)
        if choices is not None:  # one score per (example, choice): [b * c, 1] -> [b, c]
            logits = logits.reshape(*choices, -1).squeeze(-1)
        loss = head_module.loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=getattr(outputs, "hidden_states", None)
        )

    # ----------------------------------------------------------------- saving and sharing
    def save_pretrained(
        self,
        directory: str | Path,
        adapter_name: str | None = None,
        head: str | None = None,
        *,
        overwrite: bool = False,
        **metadata: Any,
    ) -> Path:
        """``save_adapter`` (with its model card, ``README.md``): adapter ``adapter_name`` (default: the only
        adapter, or the only active one) and ``head`` (default: the head of the adapter's name, if any)."""
        name = self._adapter_to_save(adapter_name)
        head = head if head is not None else (name if name in self.heads else None)
        return save_adapter(self, name, directory, head=head, metadata=metadata or None, overwrite=overwrite)

    def push_to_hub(
        self,
        repo_id: str,
        adapter_name: str | None = None,
        head: str | None = None,
        *,
        directory: str | Path | None = None,
        private: bool | None = None,
        token: str | None = None,
    ) -> str:
        """Upload adapter ``adapter_name`` (+ head, as ``save_pretrained`` saves them; or the already saved
        ``directory``) to the Hub repository ``repo_id``, created when missing; returns its URL (see ``hub``)."""
        return push_model(lambda path: self.save_pretrained(path, adapter_name, head), repo_id, directory,
                          "adapter", private=private, token=token)  # fmt: skip

    def _adapter_to_save(self, name: str | None) -> str:
        if name is not None:
            return name
        names, active = self.adapters.list_adapters(), list(self.adapters.active)
        candidates = names if len(names) == 1 else active
        if len(candidates) != 1:
            raise ValueError(f"give adapter_name=: the model has adapters {names} (active: {active})")
        return str(candidates[0])

    def print_model_info(self) -> str:
        """A short summary (also returned): base size, adapters and their sizes, heads, trainable count."""
        base = sum(p.numel() for p in self.base.parameters())
        lines = [f"base model: {self.name_or_path} ({self.config.model_type}, {base:,} parameters)"]
        for name, count in self.adapters.parameter_counts().items():
            active = " (active)" if name in self.adapters.active else ""
            lines.append(f"adapter {name}: {count:,} parameters = {100 * count / base:.3f}% of base{active}")
        for name, head in self.heads.items():
            lines.append(f"head {name}: {sum(p.numel() for p in head.parameters()):,} parameters")
        lines.append(f"trainable: {self.trainable_parameters():,}")
        text = "\n".join(lines)
        print(text)
        return text
