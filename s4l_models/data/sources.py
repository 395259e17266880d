"""Where training and evaluation batches come from.

`IndexStream` is the order in which the labeled (or unlabeled) images are visited: an endless
sequence of seeded shuffles, so batch s is a pure function of (seed, s). A resumed run therefore
sees exactly the batches an uninterrupted run would have seen, with no sampler state to save.

`ArraySource` serves in-memory datasets from one uint8 tensor on the training device (gathers
only). `FileSource` serves file-backed datasets (ImageNet) through a DataLoader with workers,
pinned memory and per-image crops in the workers: uint8 [B,C,H,W] batches, or, for a method
that asks for `copies` > 1 independently cropped copies of every training image
(S4L-Exemplar), training batches [B,copies,C,H,W].
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from .augment import file_transforms, to_device
from .datasets import ArrayData, DatasetSpec, FileData, read_image

UNREADABLE = -1  # label given to an image file that could not be decoded


class IndexStream:
    """Batches of `batch_size` drawn from successive seeded permutations of `indices`."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, salt: int = 0):
        if len(indices) == 0:
            raise UserError("the labeled subset is empty; ask for more labels")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.salt = salt
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, self.salt, epoch])
            self._perms[epoch] = self.indices[rng.permutation(len(self.indices))]
        return self._perms[epoch]

    def batch(self, step: int) -> np.ndarray:
        n = len(self.indices)
        start = step * self.batch_size
        out = []
        while len(out) < self.batch_size:
            epoch, offset = divmod(start, n)
            take = min(self.batch_size - len(out), n - offset)
            out.extend(self._perm(epoch)[offset : offset + take])
            start += take
        return np.asarray(out, dtype=np.int64)


class ArraySource:
    """In-memory dataset held on the training device as uint8; batches are index gathers."""

    pre_cropped = False

    def __init__(self, data: ArrayData, device: torch.device):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.device = device

    def train_batches(
        self, stream: IndexStream, start: int, stop: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(start, stop):
            idx = to_device(torch.from_numpy(stream.batch(step)), self.device)
            yield self.images[idx], self.labels[idx]

    def eval_batches(
        self, indices: np.ndarray, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx_all = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=self.device)
        for i in range(0, len(idx_all), batch_size):
            idx = idx_all[i : i + batch_size]
            yield self.images[idx], self.labels[idx]


class _ImageFiles(Dataset):
    """Decodes one image file per item; an unreadable file yields a blank image and label -1."""

    def __init__(self, data: FileData, transform, size: int, copies: int = 1):
        self.paths = data.paths
        self.labels = data.labels
        self.transform = transform
        self.size = size
        self.copies = copies  # the transform returns [copies,C,H,W] when copies > 1

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = self.transform(read_image(self.paths[i]))
            label = int(self.labels[i])
        except (UserError, RuntimeError, OSError):
            shape = (3, self.size, self.size)
            if self.copies > 1:
                shape = (self.copies, *shape)
            image = torch.zeros(shape, dtype=torch.uint8)
            label = UNREADABLE
        return image, label, i


class _StreamSampler(Sampler):
    def __init__(self, stream: IndexStream, start: int, stop: int):
        self.stream, self.start, self.stop = stream, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.stream.batch(step).tolist()


class FileSource:
    """File-backed dataset: DataLoader workers decode (torchvision.io) and crop each image.

    With `copies` > 1 every training image is cropped (and flipped) that many times
    independently and training batches are uint8 [B,copies,C,H,W]; evaluation batches are
    always single central crops [B,C,H,W].
    """

    pre_cropped = True

    def __init__(
        self,
        data: FileData,
        spec: DatasetSpec,
        device: torch.device,
        workers: int,
        skip_bad: bool,
        copies: int = 1,
    ):
        if copies < 1:
            raise ValueError(f"copies must be at least 1, got {copies}")
        self.data, self.spec, self.device = data, spec, device
        self.copies = copies
        self.workers = workers
        self.skip_bad = skip_bad
        self.skipped_files: set[int] = set()  # unreadable files met (indices), each once
        self._eval_loaders: dict[tuple, DataLoader] = {}

    def _loader(self, train: bool, **kwargs) -> DataLoader:
        # One training loader serves the whole run (its sampler yields every remaining step),
        # so its workers live as long as the run without persistent_workers.
        copies = self.copies if train else 1
        ds = _ImageFiles(
            self.data, file_transforms(self.spec, train, copies), self.spec.image_size, copies
        )
        return DataLoader(
            ds,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            **kwargs,
        )

    def _checked(self, loader: DataLoader):
        for images, labels, idx in loader:
            bad = labels == UNREADABLE
            if bool(bad.any()):
                if not self.skip_bad:
                    path = self.data.paths[int(idx[bad][0])]
                    raise UserError(
                        f"cannot read image file {path} (corrupt or not an image); remove it "
                        "or pass --skip-bad-images"
                    )
                self.skipped_files.update(int(i) for i in idx[bad])
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )

    def train_batches(self, stream: IndexStream, start: int, stop: int):
        loader = self._loader(True, batch_sampler=_StreamSampler(stream, start, stop))
        return self._checked(loader)

    def eval_batches(self, indices: np.ndarray, batch_size: int):
        # The same split is scored at every evaluation: keep its loader and, with workers,
        # keep them alive between evaluations (persistent_workers) instead of starting new ones.
        indices = np.asarray(indices, dtype=np.int64)
        key = (indices.tobytes(), batch_size)
        loader = self._eval_loaders.get(key)
        if loader is None:
            subset = torch.utils.data.Subset(
                _ImageFiles(self.data, file_transforms(self.spec, False), self.spec.image_size),
                indices.tolist(),
            )
            loader = DataLoader(
                subset,
                batch_size=batch_size,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
            )
            self._eval_loaders[key] = loader
        return self._checked(loader)


def make_source(
    data: ArrayData | FileData, spec: DatasetSpec, device, workers, skip_bad, copies: int = 1
):
    """The source for `data`. `copies`: independently cropped copies of every training image
    (a method's `train_copies`); file-backed sources deliver them, in-memory datasets are
    cropped on the device and ignore it."""
    if isinstance(data, ArrayData):
        return ArraySource(data, device)
    return FileSource(data, spec, device, workers, skip_bad, copies)
