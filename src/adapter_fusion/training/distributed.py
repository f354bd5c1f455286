"""What training on several processes (``torchrun`` / ``accelerate launch``: DDP) needs beyond the Trainer.

* Artefacts are written once, by the main process (global rank 0): ``is_main_process``.
* Decisions a callback takes from a local clock (the time budget) are agreed by all processes, so that no process
  stops a step earlier and leaves the others waiting in a collective: ``any_process``.
* Multi-task batches are single-task batches made by our own sampler, not by the Trainer's: every process draws
  the same stream of global batches (``per-device batch size * processes``) and takes its own slice of each, so
  every step all processes train the same task and, together, on exactly the batch 1 process would see
  (``RankBatches``).

With the same global batch, dropout off and batches that split evenly over the processes, N processes end with the
weights of 1 process (``tests/test_distributed.py``: adapter, fusion and multi-task training).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of training processes (1 when not distributed); from the launcher's ``WORLD_SIZE`` before the process
    group exists."""
    return dist.get_world_size() if _distributed() else int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """Global rank of this process (0 when not distributed); from the launcher's ``RANK`` before the process group
    exists."""
    return dist.get_rank() if _distributed() else int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on the process that writes artefacts: global rank 0 of a multi-process run, or the only process."""
    return process_rank() == 0


def any_process(flag: bool, device: torch.device | str | None = None) -> bool:
    """True on every process when ``flag`` is true on any of them (a collective: all processes must call it)."""
    if not _distributed() or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def split_evenly(indices: list[int], parts: int, part: int) -> list[int]:
    """Part ``part`` of ``parts`` contiguous slices of ``indices`` whose sizes differ by at most one; a process
    whose slice would be empty (fewer rows than processes) takes the last row, so that it still joins the step."""
    size, extra = divmod(len(indices), parts)
    start = part * size + min(part, extra)
    chunk = indices[start : start + size + (part < extra)]
    return chunk or indices[-1:]


class RankBatches(torch.utils.data.IterableDataset):
    """This process's share of a multi-task batch stream (``tasks.multitask_data.MultiTaskBatches``).

    ``batches`` is built with the per-device batch size; the stream is rebuilt with the global batch size (times
    ``processes``), which every process draws identically (it is a pure function of the seed and the epoch), and
    each global batch's rows are split evenly (``split_evenly``) before collating. One process: the stream itself.
    Exact equality with 1 process needs every batch to split into equal parts (losses are per-slice means that DDP
    averages); a short last batch of a task weighs its rows slightly differently, as in the Trainer's own DDP.
    """

    def __init__(self, batches: Any, processes: int, rank: int) -> None:
        super().__init__()
        if not 0 <= rank < processes:
            raise ValueError(f"rank must be in [0, {processes}); got {rank!r}")
        self.batches = batches
        if processes > 1:
            self.batches = type(batches)(
                batches.features, batches.collators, batches.batch_size * processes, batches.sampler,
                batches.routes, batches.seed,
            )  # fmt: skip
        self.processes, self.rank = processes, rank
        self.num_examples = batches.num_examples

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.batches.epoch
        for task, indices in self.batches.plan(epoch):
            yield self.batches.collate(task, split_evenly(list(indices), self.processes, self.rank))
        if self.batches.epoch == epoch:  # iterated without set_epoch: the next pass is the next epoch
            self.batches.epoch = epoch + 1




def rank_dataloader(batches: Any, args: Any) -> Any:
    """A loader of this process's ``RankBatches`` of ``batches`` on ``args.device`` (``args``: the Trainer's
    ``TrainingArguments``), with ``set_epoch`` and resumption (skipping batches) as the Trainer expects. Not through
    ``Accelerator.prepare``: it would gather whole batches on rank 0 and concatenate them across tasks."""
    from accelerate.data_loader import prepare_data_loader

    shard = RankBatches(batches, max(1, args.world_size), args.process_index if args.world_size > 1 else 0)
    loader = torch.utils.data.DataLoader(shard, batch_size=None, pin_memory=args.dataloader_pin_memory)
    return prepare_data_loader(
        loader, args.device, num_processes=1, process_index=0, put_on_device=True, dispatch_batches=False
    )


__all__ = [
    "RankBatches", "any_process", "is_main_process", "process_rank", "rank_dataloader", "split_evenly", "world_size",
]
