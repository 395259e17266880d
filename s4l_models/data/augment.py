"""Batched augmentation on uint8 image tensors, on whatever device the batch lives on.

Small datasets (digits, Fashion-MNIST, CIFAR) are held as one uint8 tensor and augmented a whole
batch at a time: random parameters (crop boxes, flips, colour noise) are drawn on the CPU from
the step's seeded generator, and the pixels are transformed in one `affine_grid`/`grid_sample`
call, so there is no per-image Python loop on the hot path and a batch on the GPU stays there.
torchvision.transforms.v2 draws one set of parameters per call, so per-image parameters over a
batch are ours; the HSV conversion is torchvision's. File-backed datasets (ImageNet) crop and
flip per image in DataLoader workers with torchvision.transforms.v2 (`file_transforms`), as
many independent crops of each training image as the method asks for (S4L-Exemplar's 8).

- inception-style random-resized crop (area in `crop_scale`, aspect ratio in [3/4, 4/3]) and
  a horizontal flip where the dataset allows it;
- HSV colour randomisation `hsvnoise`, the released code's (google-research/s4l preprocess.py
  `get_hsvnoise_preprocess`), after the crop and flip as in its pipelines (a per-pixel colour
  map commutes with the flip): the colour augmentation of S4L-Exemplar's copies
  (`crop_inception_patches(8,224)|hsvnoise|flip_lr`) and `color_aug`, an axis of the 1% grid
  (the 1% supervised baseline's `inception_crop|resize(224)|flip_lr|hsvnoise`);
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


# The released hsvnoise's ranges (google-research/s4l preprocess.py, get_hsvnoise_preprocess):
# hue shift, and for S and V each a power of two for the exponent, a power of two for the scale,
# and an offset.
HSV_HUE_SHIFT = (-0.1, 0.1)
HSV_SV_POW = (-2.0, 2.0)  # exponent 2**U(-2, 2)
HSV_SV_MUL = (-0.5, 0.5)  # scale 2**U(-0.5, 0.5)
HSV_SV_ADD = (-0.1, 0.1)


def hsvnoise_params(b: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image hsvnoise parameters [B, 7] on the CPU: columns hue shift, S exponent,
    V exponent, S scale, V scale, S offset, V offset (exponents and scales already 2**u)."""
    hue = _uniform(gen, b, *HSV_HUE_SHIFT).view(b, 1)
    pow_ = torch.exp2(_uniform(gen, 2 * b, *HSV_SV_POW)).view(b, 2)
    mul = torch.exp2(_uniform(gen, 2 * b, *HSV_SV_MUL)).view(b, 2)
    add = _uniform(gen, 2 * b, *HSV_SV_ADD).view(b, 2)
    return torch.cat([hue, pow_, mul, add], dim=1)


def apply_hsvnoise(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The released hsvnoise with given per-image parameters (`hsvnoise_params`) on a float
    batch [B,C,H,W] in [0, 1]:

        h = (1 + h + hue) mod 1;  s, v = s**pow * mul + add (each its own);  clip HSV to [0, 1]

    A grey (1-channel) image has S = 0 and V = its value, so only the V noise applies:
    x = clip(x**pow_v * mul_v + add_v, 0, 1). (The released code, given a 3-channel grey
    image, would also set S to clip(add_s, 0, 1), a faint tint a 1-channel image cannot hold.)
    """
    b = images.shape[0]
    p = to_device(params, images.device, images.dtype).view(b, 7, 1, 1)
    hue, pow_, mul, add = p[:, 0], p[:, 1:3], p[:, 3:5], p[:, 5:7]
    if images.shape[1] == 1:
        v = images.clamp(0, 1)
        return (v.pow(pow_[:, 1:2]) * mul[:, 1:2] + add[:, 1:2]).clamp(0, 1)
    hsv = _rgb_to_hsv(images.clamp(0, 1))
    h = torch.remainder(1.0 + hsv[:, 0:1] + hue[:, None], 1.0)
    sv = hsv[:, 1:3].pow(pow_) * mul + add
    return _hsv_to_rgb(torch.cat([h, sv], dim=1).clamp(0, 1))


def hsvnoise(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """HSV colour randomisation of the released code (`hsvnoise`), each image its own draw."""
    return apply_hsvnoise(images, hsvnoise_params(images.shape[0], gen))


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
        """Inception crop + flip (+ hsvnoise: `color_aug`), normalised."""
        x = self.crop(self.to_unit(images_u8), gen)
        if color:
            x = hsvnoise(x, gen)
        return self.normalize(x)

    def exemplar_view(self, images_u8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Inception crop + flip + hsvnoise, normalised (S4L-Exemplar's copies)."""
        x = self.crop(self.to_unit(images_u8), gen)
        return self.normalize(hsvnoise(x, gen))

    def eval_view(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Evaluation input: small datasets are used whole; file datasets arrive centre-cropped."""
        return self.normalize(self.to_unit(images_u8))


class _Views:
    """`copies` independent draws of a random transform of one image, stacked [copies,C,H,W]."""

    def __init__(self, transform, copies: int):
        self.transform, self.copies = transform, copies

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.copies)])


def file_transforms(spec: DatasetSpec, train: bool, copies: int = 1) -> v2.Compose | _Views:
    """Per-image transforms for file-backed datasets, run in DataLoader workers (uint8 out).

    Training: a random-resized crop (+ flip), [C,H,W]; with `copies` > 1, that many independent
    crops (+ flips) of the image, [copies,C,H,W] (S4L-Exemplar's copies, the released
    `crop_inception_patches(8,224)|...|flip_lr`). Evaluation ignores `copies`.
    """
    from torchvision.transforms import v2

    size = spec.image_size
    if train:
        steps = [v2.RandomResizedCrop(size, scale=spec.crop_scale, antialias=True)]
        if spec.flips:
            steps.append(v2.RandomHorizontalFlip())
        crop = v2.Compose(steps)
        return crop if copies == 1 else _Views(crop, copies)
    # central crop keeping aspect ratio: shorter side to size/0.875, then a size x size crop
    return v2.Compose(
        [v2.Resize(int(round(size / EVAL_CROP_FRACTION)), antialias=True), v2.CenterCrop(size)]
    )
