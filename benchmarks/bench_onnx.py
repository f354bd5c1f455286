"""ONNX Runtime against eager PyTorch on CPU: inference latency of a fusion of 8 adapters on the bundled MiniLM.

What it measures: a ``FusionModel`` (the bundled all-MiniLM-L6-v2 by default, attention fusion over
``--adapters`` adapters with random weights: latency doesn't depend on the values; ``--kind lora`` or ``mixed``
fuses LoRA adapters, or half LoRA), with a classification head, saved and exported by
``adapter_fusion.interop.onnx.export_onnx`` (which itself checks that ONNX Runtime's logits equal PyTorch's within
1e-4). Then, for each ``--shapes`` batch x length of random token ids with a full attention mask, the latency of
eager PyTorch (``eval()``, ``torch.no_grad``) and of the ONNX Runtime session (``ORT_ENABLE_ALL``), both with
``--threads`` intra-op threads, timed interleaved after a warm-up (``benchmarks/timing.py``); the ratio is the
median over repeats of eager / ONNX Runtime. Goal: >= 1.3.

Run it (from the repository root)::

    python benchmarks/bench_onnx.py                      # ~5 min on 2 busy CPU cores (the export dominates)
    python benchmarks/bench_onnx.py --quick              # a tiny random BERT, for a smoke test
    python benchmarks/bench_onnx.py --kind mixed --threads 2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import load_average, paired_ratio, print_times, time_interleaved  # noqa: E402

GOAL = 1.3


def build_fusion(model_name: str | None, adapters: int, kind: str) -> Any:
    from adapter_fusion.adapters import AdapterConfig, LoraConfig
    from adapter_fusion.fusion import FusionConfig
    from adapter_fusion.models.fusion_model import FusionModel

    model = FusionModel.from_pretrained(model_name)
    generator = torch.Generator().manual_seed(0)
    names = []
    for index in range(adapters):
        lora = kind == "lora" or (kind == "mixed" and index % 2)
        config = LoraConfig(r=8, target_modules=("query", "value", "output.dense")) if lora else AdapterConfig()
        name = f"{'lora' if lora else 'adapter'}{index}"
        model.add_adapter(name, config, activate=False)
        with torch.no_grad():
            for parameter in model.adapters.adapters[name].parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
        names.append(name)
    model.add_fusion(FusionConfig(adapter_names=tuple(names), fusion_method="attention"))
    model.add_classification_head("task", 2)
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="base model (default: the bundled MiniLM)")
    parser.add_argument("--adapters", type=int, default=8, help="number of fused adapters (default: 8)")
    parser.add_argument("--kind", choices=("bottleneck", "lora", "mixed"), default="bottleneck")
    parser.add_argument("--shapes", nargs="+", default=["1x32", "1x128", "8x128"], help="BATCHxLENGTH ...")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes (default: 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny random BERT (needs tests/conftest.py)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    import onnxruntime

    from adapter_fusion.interop.onnx import export_onnx
    from adapter_fusion.models import default_model_path, load_tokenizer
    from adapter_fusion.models.saving import recorded_model_name

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_name = args.model
        if args.quick:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from conftest import build_tiny_model

            tokenizer = load_tokenizer(default_model_path())
            build_tiny_model("bert", vocab_size=tokenizer.vocab_size, max_position_embeddings=256).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            model_name = tmp
        model = build_fusion(model_name, args.adapters, args.kind)
        model.save_fusion(Path(tmp) / "fusion")
        start = time.perf_counter()
        export_onnx(Path(tmp) / "fusion", Path(tmp) / "fusion.onnx", model=model_name)
        export_seconds = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(Path(tmp) / "fusion.onnx"), options, ["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    shown = recorded_model_name(model.name_or_path)  # "default" for the bundled MiniLM (no path of this machine)
    print(f"fusion of {args.adapters} {args.kind} adapters on {shown}; export: {export_seconds:.0f} s")
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {machine}, threads {args.threads}, "
          f"load average {load_average()}")  # fmt: skip
    results: dict[str, Any] = {"adapters": args.adapters, "kind": args.kind, "threads": args.threads, "shapes": {}}
    generator = torch.Generator().manual_seed(0)
    for shape in args.shapes:
        batch, length = (int(x) for x in shape.split("x"))
        ids = torch.randint(1000, 20000, (batch, length), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        inputs = {k: v for k, v in inputs.items() if k in names}
        feed = {k: v.numpy() for k, v in inputs.items()}

        def eager(inputs: dict[str, torch.Tensor] = inputs) -> Any:
            with torch.no_grad():
                return model(**inputs).logits

        def ort(feed: dict[str, Any] = feed) -> Any:
            return session.run(None, feed)

        difference = float(abs(eager().numpy() - ort()[0]).max())
        variants = {"eager PyTorch": eager, "ONNX Runtime": ort}
        times = time_interleaved(variants, repeats=args.repeats, warmup=args.warmup)
        print_times(f"{shape} (max |logits difference| {difference:.2e})", times, "ONNX Runtime", label="vs ORT")
        ratio = paired_ratio(times, "eager PyTorch", "ONNX Runtime")
        verdict = "PASS" if ratio >= GOAL else "MISS"
        print(f"speed-up of ONNX Runtime over eager: {ratio:.2f}x (goal >= {GOAL}: {verdict})")
        results["shapes"][shape] = {"speedup": ratio, "max_abs_difference": difference,
                                    "eager_ms": [1e3 * t for t in times["eager PyTorch"]],
                                    "ort_ms": [1e3 * t for t in times["ONNX Runtime"]]}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
