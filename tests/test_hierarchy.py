"""Hierarchical fusion: a node over adapters equals the flat fusion, nodes over nodes route exactly what their
method says, a method per layer range, any depth, save/reload exactly, training touches only fusion weights,
and bad trees (cycles, unknown inputs, unused nodes, overlapping layer ranges) are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import (
    FUSION_METHODS,
    FusionConfig,
    FusionNode,
    HierarchicalFuse,
    HierarchyConfig,
    build_fusion,
    build_hierarchy,
)
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.points import point_key
from conftest import make_batch, method_settings, randomise_
from test_fusion import one_thread, perturb_  # noqa: F401  (one_thread: autouse fixture)

ADAPTERS = ("s1", "s2", "n1", "n2")


def model_with_adapters(tiny_bert_dir: Path) -> FusionModel:
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for index, name in enumerate(ADAPTERS):
        placement = "houlsby" if index % 2 else "pfeiffer"
        # houlsby reads the FFN output itself (original_ln_before=False); adapters fused at one point must agree
        adapter = AdapterConfig(bottleneck_size=4 + index, placement=placement, original_ln_before=False)
        model.add_adapter(name, adapter, activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    return model


def config(method: str, **overrides: Any) -> FusionConfig:
    return FusionConfig(fusion_method=method, **{**method_settings(method, attention_dropout=0.0), **overrides})


def two_groups(top: FusionConfig | tuple[FusionConfig, ...], left: str = "weighted", right: str = "attention"):
    return HierarchyConfig(
        nodes=(
            FusionNode("sentiment", ("s1", "s2"), config(left)),
            FusionNode("nli", ("n1", "n2"), config(right)),
            FusionNode("top", ("sentiment", "nli"), top),
        )
    )


def encode(model: FusionModel, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    batch = batch or make_batch(batch=3, length=7, seed=2)
    with torch.no_grad():
        return model.encode(**batch).last_hidden_state


# ----------------------------------------------------------------------------------------------------- maths
@pytest.mark.parametrize("method", FUSION_METHODS.names())
def test_a_node_over_adapters_is_the_flat_fusion(tiny_bert_dir: Path, method: str) -> None:
    model = model_with_adapters(tiny_bert_dir)
    settings = method_settings(method, top_k=2)
    flat = build_fusion(config(method, adapter_names=("s1", "s2", "n1"), **settings), model.adapters)
    perturb_(flat)
    tree = build_hierarchy(
        HierarchyConfig((FusionNode("only", ("s1", "s2", "n1"), config(method, **settings)),)), model.adapters
    )
    for key, layer in flat.fusion_layers().items():
        tree.fusion_layers()[f"only/{key}"].load_state_dict(layer.state_dict())
    model.adapters.composition = flat
    expected = encode(model)
    model.adapters.composition = tree
    torch.testing.assert_close(encode(model), expected, rtol=0, atol=0)


def test_nodes_over_nodes_with_a_method_per_layer_range(tiny_bert_dir: Path) -> None:
    """Top node: fixed weights (1, 0) in layer 0 and (0, 1) in layer 1: equals group A, then group B."""
    model = model_with_adapters(tiny_bert_dir)
    pick = lambda weights, layers: config(  # noqa: E731
        "weighted", learnable_weights=False, fixed_weights=weights, fusion_layers=layers
    )
    tree = build_hierarchy(two_groups((pick((1.0, 0.0), (0,)), pick((0.0, 1.0), (1,)))), model.adapters)
    perturb_(tree)
    groups = {}
    for node, names, method in (("sentiment", ("s1", "s2"), "weighted"), ("nli", ("n1", "n2"), "attention")):
        groups[node] = build_fusion(config(method, adapter_names=names), model.adapters)
        for key, layer in groups[node].fusion_layers().items():
            layer.load_state_dict(tree.fusion_layers()[f"{node}/{key}"].state_dict())

    def by_layer(manager: Any, layer: int, location: str, hidden: torch.Tensor, ffn: Any) -> torch.Tensor:
        group = groups["sentiment"] if layer == 0 else groups["nli"]
        return group(manager, layer, location, hidden, ffn)

    model.adapters.composition = by_layer
    expected = encode(model)
    model.adapters.composition = tree
    torch.testing.assert_close(encode(model), expected)
    points = [point_key(i, location) for i in range(2) for location in ("attention", "ffn")]
    assert sorted(tree.fusion_layers()) == sorted(f"{n}/{k}" for n in ("sentiment", "nli", "top") for k in points)
    assert tree.node_inputs["sentiment"]["0_attention"] == ("s2",)  # s1 (Pfeiffer) has no attention point


def test_depth_three_trains_only_fusion_weights_and_reports_weights_per_node(tiny_bert_dir: Path) -> None:
    model = model_with_adapters(tiny_bert_dir)
    tree = HierarchyConfig(
        nodes=(
            FusionNode("a", ("s1", "s2"), config("gating", gate_activation="softmax")),
            FusionNode("b", ("a", "n1"), config("sparse", top_k=1)),
            FusionNode("c", ("b", "n2"), (config("attention", fusion_layers=(0,)), config("weighted"))),
        ),
        name="deep",
    )
    fuse = model.add_hierarchy(tree)
    model.add_classification_head("target", num_labels=2, dropout=0.0)
    model.train_fusion("target")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("adapters.composition.nodes.", "heads.target.")) for n in trainable)
    model.train()
    batch = make_batch(batch=3, length=7, seed=2)
    out = model(**batch, labels=torch.tensor([0, 1, 0]), return_fusion_weights=True)
    (out.loss + model.regularization_loss()).backward()  # top-1 routing: the gate learns from the balancing term
    for node in ("a", "b", "c"):
        grads = [p.grad for n, p in fuse.nodes[node].named_parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), node
    assert set(out.fusion_weights) >= {"c/0_ffn", "b/0_ffn", "a/0_ffn", "c/1_attention"}
    assert out.fusion_weights["c/0_ffn"].shape == (3, 7, 2)
    assert isinstance(fuse.fusion_layers()["c/0_ffn"], FUSION_METHODS.get("attention").layer_class)
    assert isinstance(fuse.fusion_layers()["c/1_ffn"], FUSION_METHODS.get("weighted").layer_class)
    assert "name='deep', root='c', adapters=['s1', 's2', 'n1', 'n2']" in repr(fuse)


def test_hierarchy_saves_and_reloads_exactly(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = model_with_adapters(tiny_bert_dir)
    top = (config("attention", fusion_layers=(1,), temperature=3.0), config("gating"))
    fuse = model.add_hierarchy(two_groups(top, left="sparse", right="weighted"))
    perturb_(fuse)
    model.add_classification_head("target", num_labels=3, dropout=0.0)
    randomise_(model.heads["target"], seed=4, std=0.3)
    batch = make_batch(batch=3, length=7, seed=2)
    with torch.no_grad():
        expected = model(**batch, return_fusion_weights=True)
    model.save_fusion(tmp_path / "tree")
    torch.manual_seed(321)
    reloaded = FusionModel.load_fusion(tmp_path / "tree")
    assert isinstance(reloaded.fusion, HierarchicalFuse)
    assert reloaded.fusion.hierarchy == model.fusion.hierarchy
    assert {k: v.temperature for k, v in reloaded.fusion.fusion_layers().items()} == {
        k: v.temperature for k, v in fuse.fusion_layers().items()
    }
    with torch.no_grad():
        got = reloaded(**batch, return_fusion_weights=True)
    assert torch.equal(got.logits, expected.logits)
    assert set(got.fusion_weights) == set(expected.fusion_weights)
    assert HierarchyConfig.from_dict(model.fusion.hierarchy.to_dict()) == model.fusion.hierarchy


def test_hierarchy_config_dict_round_trip_and_defaults() -> None:
    nodes = (FusionNode("a", ("s1", "s2"), config("weighted")), FusionNode("b", ("a", "n1"), config("gating")))
    tree = HierarchyConfig(nodes, root="a", name="tree")
    data = tree.to_dict()
    assert data == {"nodes": [n.to_dict() for n in nodes], "root": "a", "name": "tree"}
    assert HierarchyConfig.from_dict(data) == tree and tree.root_name == "a"
    defaults = HierarchyConfig.from_dict({"nodes": data["nodes"]})  # root and name are optional keys
    assert (defaults.root, defaults.name, defaults.root_name) == (None, "hierarchy", "b")


# ---------------------------------------------------------------------------------------------------- errors
def test_a_cycle_is_refused_with_its_path() -> None:
    with pytest.raises(ValueError, match="the fusion hierarchy has a cycle: x -> y -> x"):
        HierarchyConfig((FusionNode("x", ("y", "s1"), config("weighted")), FusionNode("y", ("x",), config("gating"))))
    with pytest.raises(ValueError, match="cycle: self -> self"):
        HierarchyConfig((FusionNode("self", ("self", "s1"), config("weighted")),))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: FusionNode("n", (), config("weighted")), ValueError, "inputs must be non-empty"),
        (lambda: FusionNode("n", ("s1", "s1"), config("weighted")), ValueError, "inputs must be distinct"),
        (lambda: FusionNode("a.b", ("s1",), config("weighted")), ValueError, "node name must be"),
        (lambda: FusionNode("n", ("s1",), "weighted"), TypeError, "configs must be one or more FusionConfig"),
        (
            lambda: FusionNode(
                "n", ("s1",), (config("weighted", fusion_layers=(0, 1)), config("gating", fusion_layers=(1,)))
            ),
            ValueError,
            r"fusion_layers overlap: \[0, 1, 1\]",
        ),
        (lambda: HierarchyConfig(()), TypeError, "nodes must be one or more FusionNode"),
        (
            lambda: HierarchyConfig((FusionNode("n", ("s1",), config("weighted")),), root="m"),
            ValueError,
            "root 'm' is not a node",
        ),
    ],
)
def test_config_errors(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_build_errors(tiny_bert_dir: Path) -> None:
    manager = model_with_adapters(tiny_bert_dir).adapters
    node = lambda name, inputs, method="weighted", **kw: FusionNode(name, inputs, config(method, **kw))  # noqa: E731
    with pytest.raises(KeyError, match="node 'top' reads 'nope', which is neither a node"):
        build_hierarchy(HierarchyConfig((node("top", ("s1", "nope")),)), manager)
    with pytest.raises(ValueError, match=r"node names \['s1'\] are also adapter names"):
        build_hierarchy(HierarchyConfig((node("s1", ("s2",)),)), manager)
    with pytest.raises(ValueError, match=r"nodes \['lost'\] are not inputs of root 'top'"):
        build_hierarchy(HierarchyConfig((node("lost", ("s1",)), node("top", ("s2",)))), manager)
    with pytest.raises(ValueError, match=r"top_k=3 exceeds the 2 fused adapters"):
        build_hierarchy(HierarchyConfig((node("top", ("s1", "s2"), "sparse", top_k=3),)), manager)
    with pytest.raises(ValueError, match=r"fusion_layers holds \[5\]"):
        build_hierarchy(HierarchyConfig((node("top", ("s1", "s2"), fusion_layers=(5,)),)), manager)
    model = model_with_adapters(tiny_bert_dir)
    model.add_hierarchy(HierarchyConfig((node("top", ("s1", "s2")),)))
    with pytest.raises(ValueError, match="already has fusion 'hierarchy'"):
        model.add_hierarchy(HierarchyConfig((node("top", ("s1", "s2")),)))
