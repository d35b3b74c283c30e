"""Training batches: a resumable stream of global batches over the uint8 cache.

``StepBatches`` orders the data as a pure function of (seed, position), so a resume
needs only the number of batches already consumed; ``BatchView`` fetches a whole
batch with one fancy index; ``StepLoader`` is the DataLoader over both, prepared by
Accelerate (which shards the stream across processes) once the position is known,
and yields model input (``{"image": [-1, 1] float, "labels": float}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from trainer.data.transforms import to_model_input


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """Global batches of indices, epoch after epoch, a pure function of (seed, position).

    Batch b of the stream is the (b mod per_epoch)-th chunk of epoch b // per_epoch's
    permutation, so resuming needs only the number of batches already consumed.
    Accelerate shards the stream across processes (every world-th batch).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0):
        if n < batch_size:
            raise ValueError(f"the dataset has {n} images, fewer than one batch of "
                             f"{batch_size}; lower batch_size")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        b = self.start
        while True:
            epoch, i = divmod(b, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))
            for j in range(i, self.per_epoch):
                yield perm[j * self.batch_size:(j + 1) * self.batch_size].tolist()
            b = (epoch + 1) * self.per_epoch


class BatchView(torch.utils.data.Dataset):
    """Fetches a whole batch with one fancy index into the uint8 cache."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx)
        return self.dataset.images[index], self.dataset.labels[index]


def _identity(x):
    return x


class StepLoader:
    """The run's batches: ``batches(consumed)`` continues the stream where a run left it.

    ``consumed`` counts this process's batches; Accelerate gives each process every
    world-th global batch, so the stream restarts at ``consumed * world``.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, workers: int, flip: bool,
                 channels_last: bool, accelerator: Any):
        self.acc, self.flip = accelerator, flip
        self.device = accelerator.device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.sampler = StepBatches(len(dataset), batch_size, seed)
        self.loader = torch.utils.data.DataLoader(
            BatchView(dataset), batch_sampler=self.sampler, collate_fn=_identity,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            # Its own generator: creating an iterator must not draw from the global
            # RNG, or a resumed run would see different noise than an uninterrupted one.
            generator=torch.Generator().manual_seed(seed))

    def epoch(self, consumed: int) -> int:
        """The data epoch (0, 1, ...) at this process's batch ``consumed``: that of the
        stream's batch ``consumed x world``, the same on every process, so that a schedule
        by epoch agrees across them."""
        return consumed * self.acc.num_processes // self.sampler.per_epoch

    def batches(self, consumed: int) -> Iterator[dict[str, torch.Tensor]]:
        """Model-input batches from this process's batch ``consumed`` on, forever."""
        self.sampler.start = consumed * self.acc.num_processes
        loader = self.acc.prepare_data_loader(self.loader, device_placement=True)
        for images, labels in loader:
            x = to_model_input(images.to(self.device, non_blocking=True), flip=self.flip)
            yield {"image": x.contiguous(memory_format=self.memory_format),
                   "labels": labels.to(self.device, non_blocking=True)}
