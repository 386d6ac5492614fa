"""A resumable, deterministic, sharded data order.

The order of epoch e is a permutation seeded by (seed, e); with W processes it is padded
to a multiple of W and process r takes every W-th index starting at r (what
torch's DistributedSampler does), then cuts its share into batches (the last, partial
batch is dropped so every step sees `batch_size` items). Because the order is a pure
function of (seed, epoch, rank), resuming only needs (epoch, batch index in the epoch):
no batch is repeated or skipped after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One 63-bit seed per (seed, epoch, rank)."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2**63 - 1)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one process; set `epoch` and `start_batch` before iterating."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        per_rank = -(-num_items // world_size)  # ceil
        if per_rank // batch_size < 1:
            raise ValueError(f"the dataset has {num_items} items, fewer than batch_size ({batch_size}) x "
                             f"processes ({world_size}); use a smaller train.batch_size or a larger dataset")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = per_rank // batch_size
        self.epoch, self.start_batch = 0, 0

    def indices(self, epoch: int) -> list[int]:
        """This process's share of epoch `epoch`'s permutation."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.num_items, generator=generator).tolist()
        total = -(-self.num_items // self.world_size) * self.world_size
        order += order[: total - len(order)]  # pad by repeating the head, like DistributedSampler
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        # built eagerly (not a generator function): `epoch` and `start_batch` are read right now
        mine = self.indices(self.epoch)
        size = self.batch_size
        return iter([mine[b * size:(b + 1) * size] for b in range(self.start_batch, self.batches_per_epoch)])

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch


class ResumableLoader:
    """An endless stream of batches from `dataloader`, remembering (epoch, batch in epoch).

    `dataloader.batch_sampler` must be an EpochBatchSampler. A dataset with a
    `get_batch(indices)` method (tensors in memory, e.g. cached latents) is indexed a whole
    batch at a time instead of item by item through the DataLoader: the same batches, with
    no per-item Python work, which matters when a GPU eats thousands of items per second.
    Each epoch's worker seeds
    come from the loader's own generator, reseeded per (seed, epoch, rank), so creating
    an iterator never draws from the global RNG (which the training step uses).
    """

    def __init__(self, dataloader: DataLoader, epoch: int = 0, batch_in_epoch: int = 0):
        self.dataloader = dataloader
        self.sampler: EpochBatchSampler = dataloader.batch_sampler
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        self._iterator: Iterator | None = None

    def _start_epoch(self) -> None:
        self.sampler.epoch, self.sampler.start_batch = self.epoch, self.batch_in_epoch
        if self.dataloader.generator is not None:
            self.dataloader.generator.manual_seed(epoch_seed(self.sampler.seed, self.epoch, self.sampler.rank))
        dataset = self.dataloader.dataset
        if callable(getattr(dataset, "get_batch", None)):  # in-memory tensors: index a whole batch at once
            self._iterator = (dataset.get_batch(batch) for batch in iter(self.sampler))
        else:
            self._iterator = iter(self.dataloader)
        # others who iterate the dataloader (e.g. a model's on_fit_end) see the whole epoch
        self.sampler.start_batch = 0

    def next(self):
        """The next batch, moving to a new epoch when this one is used up."""
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:
            self.epoch, self.batch_in_epoch, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._start_epoch()
        batch = next(self._iterator)
        self.batch_in_epoch += 1
        return batch

    def position(self) -> dict[str, int]:
        """Where the stream is: {"epoch", "batch_in_epoch"} (saved in checkpoints)."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}


def make_dataloader(dataset: Dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                    num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `dataset` driven by an EpochBatchSampler (collate: the dataset's `collate_fn` if any)."""
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=getattr(dataset, "collate_fn", None), generator=torch.Generator())
