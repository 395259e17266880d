"""Batched augmentation on uint8 image tensors, on whatever device the batch lives on.

Small datasets (digits, Fashion-MNIST, CIFAR) are held as one uint8 tensor and augmented a whole
batch at a time: random parameters (crop boxes, flips, colour factors) are drawn on the CPU from
a seeded generator, and the pixels are transformed in one `affine_grid`/`grid_sample` call, so
there is no per-image Python loop on the hot path and a batch on the GPU stays there.
torchvision.transforms.v2 draws one set of parameters per call, so per-image parameters over a
batch are ours; the HSV conversion is torchvision's. File-backed datasets (ImageNet) crop and
flip per image in DataLoader workers with torchvision.transforms.v2 (`file_transforms`).

- inception-style random-resized crop (area in `crop_scale`, aspect ratio in [3/4, 4/3]) and
  a horizontal flip where the dataset allows it;
- colour augmentation (brightness, contrast, saturation, hue jitter), an axis of the 1% grid;
- HSV colour randomisation (S4L-Exemplar's copies);
- evaluation: a central crop keeping aspect ratio (the whole image for small datasets).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .datasets import DatasetSpec

if TYPE_CHECKING:
    from torchvision.transforms import v2

# torchvision is imported where it is used (colour work, file datasets), not here: importing it
# takes ~1.5 s, which every sweep worker and `s4l-train` would pay before its first step even
# when it trains without colour augmentation on an in-memory dataset.


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv as rgb_to_hsv

    return rgb_to_hsv(x)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb as hsv_to_rgb

    return hsv_to_rgb(x)

# ImageNet evaluation: resize the shorter side so that a central 224 crop covers 87.5% of it.
EVAL_CROP_FRACTION = 0.875


def to_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None):
    """Copy a small per-step CPU tensor (indices, augmentation parameters) to `device`.

    To a GPU the copy goes through pinned memory without blocking: a plain `.to("cuda")` of
    pageable memory makes the host wait for the GPU's queue at every step, so the next step's
    work could not be queued while this one runs.
    """
    if dtype is not None:
        t = t.to(dtype)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_resized_crop(
    images: torch.Tensor,
    out_size: int,
    scale: tuple[float, float],
    flip: bool,
    gen: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Inception crop (+ optional horizontal flip) of every image of a float batch [B,C,H,W].

    Box sides are fractions of the image side; the box always lies inside the image. Bilinear
    resampling to `out_size` x `out_size`.
    """
    b = images.shape[0]
    area = _uniform(gen, b, *scale)
    log_r = _uniform(gen, b, math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / r).clamp(max=1.0)
    # centres in normalised coordinates [-1, 1] such that the box stays inside
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - h)
    sign = torch.ones(b)
    if flip:
        sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = to_device(theta, images.device, images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.2989 * r + 0.587 * g + 0.114 * b  # same weights as torchvision's rgb_to_grayscale


def color_jitter(
    images: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> torch.Tensor:
    """Per-image colour jitter of a float batch in [0, 1] (torchvision's formulas, batched)."""
    b = images.shape[0]

    def factor(amount: float) -> torch.Tensor:
        f = _uniform(gen, b, max(0.0, 1 - amount), 1 + amount)
        return to_device(f, images.device, images.dtype).view(b, 1, 1, 1)

    x = images * factor(brightness)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    c = factor(contrast)
    x = c * x + (1 - c) * mean
    if images.shape[1] == 3:
        s = factor(saturation)
        x = s * x + (1 - s) * _gray(x)
        x = x.clamp(0, 1)
        shift = to_device(_uniform(gen, b, -hue, hue), images.device, images.dtype).view(b, 1, 1)
        hsv = _rgb_to_hsv(x)
        hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], dim=1)
        x = _hsv_to_rgb(hsv)
    return x.clamp(0, 1)


def random_hsv(
    images: torch.Tensor,
    gen: torch.Generator,
    hue_delta: float = 0.1,
    saturation: tuple[float, float] = (0.5, 1.5),
    value: tuple[float, float] = (0.5, 1.5),
) -> torch.Tensor:
    """HSV colour randomisation (S4L-Exemplar): random hue shift, saturation and value scales."""
    b = images.shape[0]
    v = to_device(_uniform(gen, b, *value), images.device, images.dtype).view(b, 1, 1)
    if images.shape[1] == 1:
        return (images * v.unsqueeze(1)).clamp(0, 1)
    hsv = _rgb_to_hsv(images.clamp(0, 1))
    dh = _uniform(gen, b, -hue_delta, hue_delta)
    dh = to_device(dh, images.device, images.dtype).view(b, 1, 1)
    s = to_device(_uniform(gen, b, *saturation), images.device, images.dtype).view(b, 1, 1)
    hsv = torch.stack(
        [(hsv[:, 0] + dh) % 1.0, (hsv[:, 1] * s).clamp(0, 1), (hsv[:, 2] * v).clamp(0, 1)], dim=1
    )
    return _hsv_to_rgb(hsv)


class Augmenter:
    """Turns uint8 batches on the device into normalised float model inputs.

    `pre_cropped` is True for file-backed datasets, whose DataLoader workers already did the
    crop and flip (see `file_transforms`); only colour work and normalisation remain here.
    """

    def __init__(self, spec: DatasetSpec, device: torch.device, pre_cropped: bool = False):
        self.spec = spec
        self.device = device
        self.pre_cropped = pre_cropped
        self.mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
        # channels_last on CUDA makes convolutions faster; the trainer sets it with the model's
        self.memory_format = torch.contiguous_format

    def to_unit(self, images_u8: torch.Tensor) -> torch.Tensor:
        return images_u8.to(self.device, non_blocking=True).float().div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def pixel_scale(self) -> torch.Tensor:
        """Size of one 0-255 pixel step in model-input units, per channel [1,C,1,1]."""
        return 1.0 / (255.0 * self.std)

    def crop(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.pre_cropped:
            return x
        return random_resized_crop(
            x, self.spec.image_size, self.spec.crop_scale, self.spec.flips, gen
        )

    def train_view(
        self, images_u8: torch.Tensor, gen: torch.Generator, color: bool = False
    ) -> torch.Tensor:
        """Inception crop + flip (+ colour jitter), normalised."""
        x = self.crop(self.to_unit(images_u8), gen)
        if color:
            x = color_jitter(x, gen)
        return self.normalize(x)

    def exemplar_view(self, images_u8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Inception crop + flip + HSV randomisation, normalised (S4L-Exemplar's copies)."""
        x = self.crop(self.to_unit(images_u8), gen)
        return self.normalize(random_hsv(x, gen))

    def eval_view(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Evaluation input: small datasets are used whole; file datasets arrive centre-cropped."""
        return self.normalize(self.to_unit(images_u8))


def file_transforms(spec: DatasetSpec, train: bool) -> v2.Compose:
    """Per-image transforms for file-backed datasets, run in DataLoader workers (uint8 out)."""
    from torchvision.transforms import v2

    size = spec.image_size
    if train:
        steps = [v2.RandomResizedCrop(size, scale=spec.crop_scale, antialias=True)]
        if spec.flips:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)
    # central crop keeping aspect ratio: shorter side to size/0.875, then a size x size crop
    return v2.Compose(
        [v2.Resize(int(round(size / EVAL_CROP_FRACTION)), antialias=True), v2.CenterCrop(size)]
    )
