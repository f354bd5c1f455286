"""Hierarchical fusion: a fusion whose inputs are adapters or other fusions, to any depth, with its own method
per node and per range of layers.

    tree = HierarchyConfig(nodes=(
        FusionNode("sentiment", ("sst2", "mr"), FusionConfig(fusion_method="weighted")),
        FusionNode("nli", ("mnli", "rte"), FusionConfig(fusion_method="attention")),
        FusionNode("top", ("sentiment", "nli"), (FusionConfig(fusion_method="gating", fusion_layers=(0, 1, 2)),
                                                 FusionConfig(fusion_method="attention", fusion_layers=(3, 4, 5)))),
    ))                                                   # the root is the last node unless root= is given
    model.add_hierarchy(tree)

At every adapter point each node computes a contribution (no residual) from its inputs' contributions: an
adapter's is ``up_i``, a node's is its fused mixture. The root's is added to the sub-layer output (or replaces it
for ``residual=False`` adapters), so a node over adapters only is exactly the flat fusion of those adapters.
A node whose inputs are all adapters runs its method's packed fast path; a node over other nodes mixes their
contributions with its method's plain reference implementation (every input in hidden dims; sparse fusion then
computes its inputs densely). A node's configs split the layers between methods: each config's
``fusion_layers`` names its layers (``None``: every layer no other config of the node names); in a layer no
config covers, the node contributes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from adapter_fusion.fusion.base import FusionLayer
from adapter_fusion.fusion.composition import Fuse, fusion_input, point_inputs
from adapter_fusion.fusion.config import FusionConfig
from adapter_fusion.fusion.registry import FUSION_METHODS, FusionPoint
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.points import point_key

if TYPE_CHECKING:
    from adapter_fusion.models.fusion_model import FusionModel


@dataclasses.dataclass(frozen=True)
class FusionNode:
    """One fusion of a hierarchy."""

    name: str
    """Name of the node (used by parent nodes as an input, and in weight keys ``"<node>/<point>"``)."""
    inputs: tuple[str, ...]
    """Names of the adapters and nodes it fuses, in order."""
    configs: tuple[FusionConfig, ...]
    """The node's method and settings; several configs with disjoint ``fusion_layers`` give a method per layer
    range (their ``adapter_names``/``adapter_paths`` are not used)."""

    def __post_init__(self) -> None:
        if isinstance(self.configs, FusionConfig):
            object.__setattr__(self, "configs", (self.configs,))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "configs", tuple(self.configs))
        if not isinstance(self.name, str) or not self.name or "." in self.name or "/" in self.name:
            raise ValueError(f"node name must be a non-empty string without '.' or '/'; got {self.name!r}")
        if not self.inputs or not all(isinstance(i, str) and i for i in self.inputs):
            raise ValueError(f"node {self.name!r}: inputs must be non-empty names; got {list(self.inputs)}")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"node {self.name!r}: inputs must be distinct; got {list(self.inputs)}")
        if not self.configs or not all(isinstance(c, FusionConfig) for c in self.configs):
            raise TypeError(f"node {self.name!r}: configs must be one or more FusionConfig; got {self.configs!r}")
        claimed = [i for c in self.configs if c.fusion_layers is not None for i in c.fusion_layers]
        if len(set(claimed)) != len(claimed):
            raise ValueError(f"node {self.name!r}: the configs' fusion_layers overlap: {sorted(claimed)}")
        if sum(c.fusion_layers is None for c in self.configs) > 1:
            raise ValueError(f"node {self.name!r}: at most one config may leave fusion_layers unset (the rest)")

    def config_for(self, layer: int) -> tuple[int, FusionConfig] | None:
        """The index and config that cover ``layer``, or ``None``."""
        for index, config in enumerate(self.configs):
            if config.fusion_layers is not None and layer in config.fusion_layers:
                return index, config
        for index, config in enumerate(self.configs):
            if config.fusion_layers is None:
                return index, config
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "inputs": list(self.inputs), "configs": [c.to_dict() for c in self.configs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionNode:
        configs = tuple(FusionConfig.from_dict(c) for c in data["configs"])
        return cls(data["name"], tuple(data["inputs"]), configs)


@dataclasses.dataclass(frozen=True)
class HierarchyConfig:
    """A tree (or DAG) of fusion nodes over adapters."""

    nodes: tuple[FusionNode, ...]
    """The nodes; each input names an adapter of the model or another node."""
    root: str | None = None
    """The node whose output enters the model; the last node when unset."""
    name: str = "hierarchy"
    """Name of the whole fusion."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if not self.nodes or not all(isinstance(n, FusionNode) for n in self.nodes):
            raise TypeError(f"nodes must be one or more FusionNode; got {self.nodes!r}")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be distinct; got {names}")
        if self.root is not None and self.root not in names:
            raise ValueError(f"root {self.root!r} is not a node; nodes: {names}")
        self.order()  # cycles -> ValueError

    @property
    def root_name(self) -> str:
        return self.root or self.nodes[-1].name

    def node(self, name: str) -> FusionNode:
        return next(n for n in self.nodes if n.name == name)

    def order(self) -> list[str]:
        """Node names, inputs before the nodes that read them; a cycle raises naming it."""
        by_name = {n.name: n for n in self.nodes}
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = visiting[visiting.index(name) :] + [name]
                raise ValueError(f"the fusion hierarchy has a cycle: {' -> '.join(cycle)}")
            visiting.append(name)
            for child in by_name[name].inputs:
                if child in by_name:
                    visit(child)
            visiting.pop()
            done.append(name)

        for node in self.nodes:
            visit(node.name)
        return done

    def leaves(self) -> list[str]:
        """Inputs that are not nodes (the adapters), in first-use order from the root."""
        names = {n.name for n in self.nodes}
        found: list[str] = []
        for node in self.order():
            found.extend(i for i in self.node(node).inputs if i not in names and i not in found)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [n.to_dict() for n in self.nodes], "root": self.root, "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HierarchyConfig:
        nodes = tuple(FusionNode.from_dict(n) for n in data["nodes"])
        return cls(nodes, data.get("root"), data.get("name", "hierarchy"))


class Precomputed:
    """Stands in for an adapter in a method's reference implementation: returns a computed contribution."""

    def __init__(self, contribution: torch.Tensor) -> None:
        self.contribution = contribution

    def __call__(self, source: torch.Tensor) -> torch.Tensor:
        return self.contribution


class HierarchicalFuse(Fuse):
    """The composition of a ``HierarchyConfig``: per node, one ``FusionLayer`` per point it fuses.

    ``fusion_layers()`` and ``last_weights`` are keyed ``"<node>/<point>"``; ``adapter_names`` are the leaves."""

    def __init__(
        self,
        hierarchy: HierarchyConfig,
        node_layers: Mapping[str, Mapping[str, FusionLayer]],
        node_inputs: Mapping[str, Mapping[str, Sequence[str]]],
    ) -> None:
        super().__init__(hierarchy.name, hierarchy.leaves(), {}, {}, None)
        self.hierarchy = hierarchy
        self.nodes = nn.ModuleDict({node: nn.ModuleDict(dict(layers)) for node, layers in node_layers.items()})
        self.node_inputs = {node: {k: tuple(v) for k, v in points.items()} for node, points in node_inputs.items()}

    def fusion_layers(self) -> dict[str, FusionLayer]:
        return {
            f"{node}/{key}": cast(FusionLayer, layer)
            for node, layers in self.nodes.items()
            for key, layer in cast(nn.ModuleDict, layers).items()
        }

    def forward(
        self, manager: AdapterManager, layer: int, location: str, hidden: torch.Tensor, ffn_input: torch.Tensor | None
    ) -> torch.Tensor:
        key = point_key(layer, location)
        if all(key not in cast(nn.ModuleDict, layers) for layers in self.nodes.values()):
            return hidden
        # the query and the sequential adapters' input, and the residual, as a flat fusion of these adapters has them
        # (both ``hidden`` unless the adapters apply the sub-layer's LayerNorm first: ``original_ln_before``)
        source, residual_input = fusion_input(manager, self.adapter_names, layer, location, hidden)
        delta = self._contribution(self.hierarchy.root_name, key, manager, layer, location, source, ffn_input)
        if delta is None:
            return hidden
        _, residual = point_inputs(manager, self.adapter_names)
        return residual_input + delta if residual else delta

    def _contribution(
        self,
        node: str,
        key: str,
        manager: AdapterManager,
        layer: int,
        location: str,
        hidden: torch.Tensor,
        ffn_input: torch.Tensor | None,
    ) -> torch.Tensor | None:
        layers = cast(nn.ModuleDict, self.nodes[node])
        if key not in layers:
            return None
        fusion = cast(FusionLayer, layers[key])
        inputs = self.node_inputs[node][key]
        if all(name not in self.nodes for name in inputs):  # adapters only: the method's packed fast path
            adapters = [manager.adapter_module(name, layer, location) for name in inputs]
            reads, _ = point_inputs(manager, inputs)
            out = fusion(hidden, adapters, ffn_input, reads_ffn_input=reads, residual=False,  # type: ignore[arg-type]
                         return_weights=self.collect_weights, module_input=manager.module_input)  # fmt: skip
        else:
            parts = []
            for name in inputs:
                if name in self.nodes:
                    part = self._contribution(name, key, manager, layer, location, hidden, ffn_input)
                else:
                    adapter = manager.adapter_module(name, layer, location)
                    placement = getattr(manager.configs[name], "placement", None)  # LoRA configs have none
                    source = (
                        manager.module_input if placement is None else ffn_input if placement == "parallel" else hidden
                    )
                    part = adapter(source)  # type: ignore[misc]
                assert part is not None
                parts.append(Precomputed(part))
            reference = FUSION_METHODS.get(self._method(node, layer)).reference
            out = reference(fusion, hidden, parts, None, residual=False)
        if self.collect_weights and out.weights is not None:
            self.last_weights[f"{node}/{key}"] = out.weights
        return out.hidden

    def _method(self, node: str, layer: int) -> str:
        found = self.hierarchy.node(node).config_for(layer)
        assert found is not None
        return found[1].fusion_method

    def extra_repr(self) -> str:
        return f"name={self.name!r}, root={self.hierarchy.root_name!r}, adapters={list(self.adapter_names)}"


def build_hierarchy(hierarchy: HierarchyConfig, manager: AdapterManager) -> HierarchicalFuse:
    """Build (not attach) the composition; raises naming the bad value: unknown inputs, a node named like an
    adapter, mixed residual flags, fusion layers out of range, settings a method refuses (e.g. ``top_k`` > inputs)."""
    if not isinstance(hierarchy, HierarchyConfig):
        raise TypeError(f"hierarchy must be a HierarchyConfig; got {type(hierarchy).__name__}")
    names = {n.name for n in hierarchy.nodes}
    clash = sorted(names & set(manager.list_adapters()))
    if clash:
        raise ValueError(f"node names {clash} are also adapter names; rename the nodes")
    for node in hierarchy.nodes:
        unknown = [i for i in node.inputs if i not in names and i not in manager]
        if unknown:
            raise KeyError(
                f"node {node.name!r} reads {unknown[0]!r}, which is neither a node ({sorted(names)}) nor an adapter "
                f"({manager.list_adapters() or 'none'})"
            )
        for config in node.configs:
            bad = [i for i in config.fusion_layers or () if not 0 <= i < manager.num_layers]
            if bad:
                raise ValueError(f"node {node.name!r}: fusion_layers holds {bad}; the model has layers "
                                 f"0..{manager.num_layers - 1}")  # fmt: skip
    reachable = _reachable(hierarchy)
    unused = [n.name for n in hierarchy.nodes if n.name not in reachable]
    if unused:
        raise ValueError(f"nodes {unused} are not inputs of root {hierarchy.root_name!r} (directly or below it)")
    point_inputs(manager, hierarchy.leaves())  # mixed residual flags -> ValueError
    points: dict[str, set[str]] = {}
    node_layers: dict[str, dict[str, FusionLayer]] = {}
    node_inputs: dict[str, dict[str, tuple[str, ...]]] = {}
    for name in hierarchy.order():
        node = hierarchy.node(name)
        shared: dict[int, dict[str, Any]] = {}
        node_layers[name], node_inputs[name], points[name] = {}, {}, set()
        input_points = {i: points[i] if i in points else set(manager.adapters[i].keys()) for i in node.inputs}
        for key in sorted(set().union(*input_points.values())):
            layer = int(key.split("_", 1)[0])
            found = node.config_for(layer)
            if found is None:
                continue
            index, config = found
            present = [i for i, n in enumerate(node.inputs) if key in input_points[n]]
            point = FusionPoint(key, manager.hidden_size, tuple(present), len(node.inputs))
            node_layers[name][key] = FUSION_METHODS.get(config.fusion_method).build(
                config, point, shared.setdefault(index, {})
            )
            node_inputs[name][key] = tuple(node.inputs[i] for i in present)
            points[name].add(key)
    fuse = HierarchicalFuse(hierarchy, node_layers, node_inputs)
    reference = next(manager.base_model.parameters(), None)
    if reference is not None:
        fuse.to(device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None)
    fuse.train(manager.training)
    return fuse


def _reachable(hierarchy: HierarchyConfig) -> set[str]:
    names = {n.name for n in hierarchy.nodes}
    seen: set[str] = set()
    stack = [hierarchy.root_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(i for i in hierarchy.node(name).inputs if i in names)
    return seen


def add_hierarchy(model: FusionModel, hierarchy: HierarchyConfig) -> HierarchicalFuse:
    """Build the hierarchy over the model's adapters and make it the model's fusion."""
    if model.fusion is not None:
        raise ValueError(f"this model already has fusion {model.fusion.name!r}; remove_fusion() first")
    fuse = build_hierarchy(hierarchy, model.adapters)
    model.adapters.composition = fuse
    return fuse


def hierarchy_info(fuse: Fuse) -> dict[str, Any]:
    """What ``save_fusion`` records for a hierarchy (nothing for a flat fusion): the tree and every layer's
    temperature (nodes may differ)."""
    if not isinstance(fuse, HierarchicalFuse):
        return {}
    temperatures = {key: layer.temperature for key, layer in fuse.fusion_layers().items()}
    return {"hierarchy": fuse.hierarchy.to_dict(), "layer_temperatures": temperatures}


def restore_temperatures(fuse: Fuse, temperatures: Mapping[str, float]) -> None:
    layers = fuse.fusion_layers()
    for key, temperature in temperatures.items():
        layers[key].set_temperature(temperature)
