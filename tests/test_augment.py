"""Batched augmentation: shapes, exact identities at the edges of its ranges, value ranges."""

from __future__ import annotations

import torch

from s4l_models.data.augment import Augmenter, color_jitter, random_hsv, random_resized_crop
from s4l_models.data.datasets import DATASETS


def _batch(b=6, c=3, s=12):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, s, s, generator=g)


def test_full_crop_without_flip_is_the_identity():
    x = _batch()
    g = torch.Generator().manual_seed(1)
    y = random_resized_crop(x, 12, (1.0, 1.0), False, g, ratio=(1.0, 1.0))
    assert torch.allclose(y, x, atol=1e-5)


def test_full_crop_with_flip_flips_some_images_exactly():
    x = _batch(b=32)
    g = torch.Generator().manual_seed(2)
    y = random_resized_crop(x, 12, (1.0, 1.0), True, g, ratio=(1.0, 1.0))
    flipped = [torch.allclose(y[i], x[i].flip(-1), atol=1e-5) for i in range(32)]
    same = [torch.allclose(y[i], x[i], atol=1e-5) for i in range(32)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 4 < sum(flipped) < 28  # about half


def test_crops_differ_per_image_and_are_reproducible():
    x = _batch(b=8).expand(8, 3, 12, 12).contiguous()
    x[:] = x[0]
    y1 = random_resized_crop(x, 8, (0.2, 1.0), False, torch.Generator().manual_seed(5))
    y2 = random_resized_crop(x, 8, (0.2, 1.0), False, torch.Generator().manual_seed(5))
    assert y1.shape == (8, 3, 8, 8)
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1[0], y1[1])  # same image, different crops


def test_colour_ops_stay_in_range_and_change_pixels():
    x = _batch(b=16)
    g = torch.Generator().manual_seed(3)
    for y in (color_jitter(x, g), random_hsv(x, g), color_jitter(x[:, :1], g)):
        assert y.min() >= 0 and y.max() <= 1
        assert not torch.allclose(y, x[:, : y.shape[1]])


def test_augmenter_normalises_and_keeps_eval_images_whole():
    spec = DATASETS["digits"]
    aug = Augmenter(spec, torch.device("cpu"))
    u8 = (torch.arange(64, dtype=torch.uint8) * 4).view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    ev = aug.eval_view(u8)
    expected = (u8.float() / 255 - spec.mean[0]) / spec.std[0]
    assert torch.allclose(ev, expected, atol=1e-6)
    tr = aug.train_view(u8, torch.Generator().manual_seed(0))
    assert tr.shape == ev.shape and not torch.allclose(tr, ev)
