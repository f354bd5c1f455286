"""Hierarchical fusion: a node over adapters equals the flat fusion, nodes over nodes route exactly what their
method says, a method per layer range, any depth, save/reload exactly, training touches only fusion weights,
and bad trees (cycles, unknown inputs, unused nodes, overlapping layer ranges) are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from adapter_fusion.adapters import AdapterConfig, LoraConfig
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


def model_with_adapters(tiny_bert_dir: Path, original_ln_before: bool = False) -> FusionModel:
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for index, name in enumerate(ADAPTERS):
        placement = "houlsby" if index % 2 else "pfeiffer"
        # adapters fused at one point must agree on original_ln_before (they read one input)
        adapter = AdapterConfig(bottleneck_size=4 + index, placement=placement, original_ln_before=original_ln_before)
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
@pytest.mark.parametrize("original_ln_before", [False, True])
@pytest.mark.parametrize("method", FUSION_METHODS.names())
def test_a_node_over_adapters_is_the_flat_fusion(tiny_bert_dir: Path, method: str, original_ln_before: bool) -> None:
    """Also for AdapterHub-style adapters that read the normed sum (``original_ln_before=True``, the Pfeiffer
    default): the hierarchy queries and adds the residual as a flat fusion does."""
    model = model_with_adapters(tiny_bert_dir, original_ln_before)
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


@pytest.mark.parametrize("original_ln_before", [False, True])
def test_nodes_over_nodes_with_a_method_per_layer_range(tiny_bert_dir: Path, original_ln_before: bool) -> None:
    """Top node: fixed weights (1, 0) in layer 0 and (0, 1) in layer 1: equals group A, then group B."""
    model = model_with_adapters(tiny_bert_dir, original_ln_before)
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


KINDS = {
    "parallel": lambda index: AdapterConfig(bottleneck_size=3 + index, placement="parallel"),
    "lora": lambda index: LoraConfig(r=2 + index, target_modules=("query", "output.dense")),
    "no_residual": lambda index: AdapterConfig(
        bottleneck_size=3 + index, placement="pfeiffer", residual=False, original_ln_before=False
    ),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nodes_over_nodes_feed_each_adapter_kind_its_own_input(tiny_bert_dir: Path, kind: str) -> None:
    """Parallel adapters read the FFN input, LoRA the linear layer's input, residual=False adapters replace the
    sub-layer output: a top node picking the group (layer 0) or the lone adapter (layer 1) equals those alone."""
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for index, name in enumerate(("a1", "a2", "a3")):
        model.add_adapter(name, KINDS[kind](index), activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    pick = lambda weights, layers: config(  # noqa: E731
        "weighted", learnable_weights=False, fixed_weights=weights, fusion_layers=layers
    )
    tree = HierarchyConfig(
        nodes=(
            FusionNode("group", ("a1", "a2"), config("weighted")),
            FusionNode("top", ("group", "a3"), (pick((1.0, 0.0), (0,)), pick((0.0, 1.0), (1,)))),
        )
    )
    fuse = build_hierarchy(tree, model.adapters)
    perturb_(fuse)
    group = build_fusion(config("weighted", adapter_names=("a1", "a2")), model.adapters)
    for key, layer in group.fusion_layers().items():
        layer.load_state_dict(fuse.fusion_layers()[f"group/{key}"].state_dict())
    alone = build_fusion(config("weighted", adapter_names=("a3",)), model.adapters)  # one input: weight 1

    def by_layer(manager: Any, layer: int, location: str, hidden: torch.Tensor, ffn: Any) -> torch.Tensor:
        return (group if layer == 0 else alone)(manager, layer, location, hidden, ffn)

    model.adapters.composition = by_layer
    expected = encode(model)
    model.adapters.composition = fuse
    torch.testing.assert_close(encode(model), expected)
    assert fuse.last_weights == {}  # nothing is kept unless weights are asked for


def test_a_node_skips_the_layers_its_configs_leave_out(tiny_bert_dir: Path) -> None:
    manager = model_with_adapters(tiny_bert_dir).adapters
    fuse = build_hierarchy(
        HierarchyConfig((FusionNode("top", ("s1", "s2"), config("weighted", fusion_layers=(1,))),)), manager
    )
    assert sorted(fuse.fusion_layers()) == ["top/1_attention", "top/1_ffn"]


def test_shared_weights_are_shared_per_config_of_a_node(tiny_bert_dir: Path) -> None:
    manager = model_with_adapters(tiny_bert_dir).adapters
    shared = lambda layers: config("weighted", weight_sharing="shared", fusion_layers=layers)  # noqa: E731
    fuse = build_hierarchy(HierarchyConfig((FusionNode("top", ("s2", "n2"), (shared((0,)), shared((1,)))),)), manager)
    layers = fuse.fusion_layers()
    logits = {key: dict(layer.named_parameters())["logits"] for key, layer in layers.items()}
    assert logits["top/0_attention"] is logits["top/0_ffn"]
    assert logits["top/1_attention"] is logits["top/1_ffn"]
    assert logits["top/0_ffn"] is not logits["top/1_ffn"]


def test_a_diamond_reaches_every_node(tiny_bert_dir: Path) -> None:
    """``x`` and ``top`` both read ``b``: visiting ``b`` twice must not stop the walk before ``a``."""
    manager = model_with_adapters(tiny_bert_dir).adapters
    tree = HierarchyConfig(
        nodes=(
            FusionNode("a", ("s1", "s2"), config("weighted")),
            FusionNode("b", ("n1", "n2"), config("weighted")),
            FusionNode("x", ("b", "s2"), config("weighted")),
            FusionNode("top", ("a", "b", "x"), config("weighted")),
        )
    )
    fuse = build_hierarchy(tree, manager)
    assert set(fuse.nodes) == {"a", "b", "x", "top"}


def test_the_hierarchy_takes_the_base_models_dtype(tiny_bert_dir: Path) -> None:
    model = model_with_adapters(tiny_bert_dir).double()
    fuse = build_hierarchy(two_groups(config("gating")), model.adapters)
    assert {p.dtype for p in fuse.parameters()} == {torch.float64}


# ---------------------------------------------------------------------------------------------------- errors
def test_sequences_are_stored_as_tuples() -> None:
    node = FusionNode("n", ["s1", "s2"], [config("weighted")])  # type: ignore[arg-type]
    assert (node.inputs, node.configs) == (("s1", "s2"), (config("weighted"),))
    assert HierarchyConfig([node]).nodes == (node,)  # type: ignore[arg-type]


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
        (lambda: FusionNode("a/b", ("s1",), config("weighted")), ValueError, r"without '\.' or '/'; got 'a/b'"),
        (lambda: FusionNode(7, ("s1",), config("weighted")), ValueError, "non-empty string without '.' or '/'; got 7"),
        (
            lambda: FusionNode("n", ("s1", ""), config("weighted")),
            ValueError,
            r"node 'n': inputs must be non-empty names; got \['s1', ''\]",
        ),
        (
            lambda: FusionNode("n", ("s1",), (config("weighted"), config("gating"))),
            ValueError,
            r"node 'n': at most one config may leave fusion_layers unset \(the rest\)",
        ),
        (
            lambda: HierarchyConfig((FusionNode("n", ("s1",), config("weighted")),) * 2),
            ValueError,
            r"node names must be distinct; got \['n', 'n'\]",
        ),
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
    with pytest.raises(ValueError, match=r"node 'top': fusion_layers holds \[2\]; the model has layers 0\.\.1$"):
        build_hierarchy(HierarchyConfig((node("top", ("s1", "s2"), fusion_layers=(0, 2)),)), manager)
    with pytest.raises(TypeError, match="^hierarchy must be a HierarchyConfig; got dict$"):
        build_hierarchy({"nodes": []}, manager)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"point '0_attention' "):  # s1 (Pfeiffer) has no attention point
        build_hierarchy(HierarchyConfig((node("top", ("s1", "s2"), weight_sharing="shared"),)), manager)
    bare = FusionModel.from_pretrained(str(tiny_bert_dir)).adapters
    with pytest.raises(KeyError, match=r"reads 's1', which is neither a node \(\['top'\]\) nor an adapter \(none\)"):
        build_hierarchy(HierarchyConfig((node("top", ("s1",)),)), bare)
    model = model_with_adapters(tiny_bert_dir)
    model.add_hierarchy(HierarchyConfig((node("top", ("s1", "s2")),)))
    with pytest.raises(ValueError, match="already has fusion 'hierarchy'"):
        model.add_hierarchy(HierarchyConfig((node("top", ("s1", "s2")),)))


def test_the_hierarchy_moves_to_the_base_models_device(tiny_bert_dir: Path) -> None:
    manager = model_with_adapters(tiny_bert_dir).adapters
    manager.base_model.to("meta")  # a second device without an accelerator
    fuse = build_hierarchy(two_groups(config("gating")), manager)
    assert {p.device.type for p in fuse.parameters()} == {"meta"}
