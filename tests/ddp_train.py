"""The ``adapter-fusion`` command line with every ``nn.Dropout`` of the trained model set to p=0, for
``test_distributed.py``: launched by ``torch.distributed.run`` (2 processes, gloo) and run in-process (1 process).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_train.py plan.json

``plan.json`` lists command lines (``[["train-adapter", "--task", "sst2", ...], ...]``), run one after the other
in the same processes (one launch, one import of torch and transformers). After them, every process checks that the
time budget callback stops all processes at the same step when only one is over its budget.

Dropout draws its masks from each process's own random stream, so 2 processes cannot draw the masks that 1 process
draws for the same global batch; with dropout off the two runs compute the same function and must end with the
same weights. (The base model of the test is saved with its own dropout rates at 0, and the fusion's attention
dropout is set to 0 by its ``--attention-dropout`` flag.)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transformers
from torch import nn


class NoDropout(transformers.TrainerCallback):
    """Set every ``nn.Dropout`` of the model to p=0 when training begins."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        assert isinstance(model, nn.Module)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0


def with_no_dropout(init: Callable[..., None]) -> Callable[..., None]:
    """``ModularTrainer.__init__`` that also adds ``NoDropout``."""

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.add_callback(NoDropout())

    return wrapped


def check_time_budget_agreement() -> None:
    """Only rank 1 is over its budget; both ranks must stop (a rank that went on would wait forever in DDP)."""
    from adapter_fusion.training.distributed import process_rank
    from adapter_fusion.training.trainer import TimeBudgetCallback

    budget = TimeBudgetCallback(minutes=60)
    budget.start = time.monotonic() - (7200 if process_rank() == 1 else 0)
    args = transformers.TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    control = transformers.TrainerControl()
    budget.on_step_end(args, transformers.TrainerState(), control)
    assert control.should_training_stop, f"rank {process_rank()} went on"


def main(plan: Path) -> int:
    from adapter_fusion.cli import main as cli
    from adapter_fusion.training.trainer import ModularTrainer

    ModularTrainer.__init__ = with_no_dropout(ModularTrainer.__init__)  # type: ignore[method-assign]
    for argv in json.loads(plan.read_text()):
        code = cli(argv)
        if code:
            return code
    check_time_budget_agreement()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
