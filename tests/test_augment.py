"""Batched augmentation: shapes, exact identities at the edges of its ranges, value ranges, and
the released hsvnoise checked against a per-pixel colorsys reference."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from s4l_models.data.augment import (
    Augmenter,
    apply_hsvnoise,
    hsvnoise,
    hsvnoise_params,
    random_resized_crop,
)
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


def test_hsvnoise_stays_in_range_and_changes_pixels():
    x = _batch(b=16)
    g = torch.Generator().manual_seed(3)
    for y in (hsvnoise(x, g), hsvnoise(x[:, :1], g)):
        assert y.shape == x[:, : y.shape[1]].shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1
        assert not torch.allclose(y, x[:, : y.shape[1]])


def _reference_hsvnoise(image: np.ndarray, p) -> np.ndarray:
    """The released `_hsvnoise` of one RGB image [3,H,W] in [0, 1], pixel by pixel (colorsys),
    with parameters p = (hue shift, S pow, V pow, S mul, V mul, S add, V add)."""
    hue, pow_s, pow_v, mul_s, mul_v, add_s, add_v = (float(v) for v in p)
    out = np.empty_like(image)
    for yy in range(image.shape[1]):
        for xx in range(image.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*image[:, yy, xx])
            h = math.fmod(1.0 + h + hue, 1.0)
            s = s**pow_s * mul_s + add_s
            v = v**pow_v * mul_v + add_v
            h, s, v = (min(max(c, 0.0), 1.0) for c in (h, s, v))
            out[:, yy, xx] = colorsys.hsv_to_rgb(h, s, v)
    return out


# hue shift, S/V exponents, S/V scales, S/V offsets: the ends of the released ranges (both
# clip ends reached, hue wrapping both ways) and a middle
FIXED_PARAMS = torch.tensor(
    [
        [0.1, 4.0, 0.25, 2**0.5, 2**-0.5, 0.1, -0.1],
        [-0.1, 0.25, 4.0, 2**-0.5, 2**0.5, -0.1, 0.1],
        [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],  # the identity
        [0.05, 2**0.7, 2**-1.3, 2**0.2, 2**-0.1, 0.03, -0.02],
    ],
    dtype=torch.float64,
)


def test_hsvnoise_params_are_per_image_and_in_the_released_ranges():
    p = hsvnoise_params(4096, torch.Generator().manual_seed(0))
    assert p.shape == (4096, 7)
    lo = torch.tensor([-0.1, -2, -2, -0.5, -0.5, -0.1, -0.1])
    hi = -lo
    u = torch.cat([p[:, :1], torch.log2(p[:, 1:5]), p[:, 5:]], dim=1)
    assert bool((u >= lo - 1e-6).all()) and bool((u <= hi + 1e-6).all())
    # every column really spans its range, and S and V draw their own values
    assert bool((u.min(0).values < lo * 0.9).all()) and bool((u.max(0).values > hi * 0.9).all())
    assert not torch.equal(p[:, 1], p[:, 2]) and not torch.equal(p[:, 5], p[:, 6])
    again = hsvnoise_params(4096, torch.Generator().manual_seed(0))
    assert torch.equal(p, again)  # a function of the generator's seed


@pytest.mark.parametrize("source", ["fixed", "drawn"])
def test_hsvnoise_matches_the_released_formula_per_image(source):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((4, 3, 5, 6)))  # float64 RGB in [0, 1)
    if source == "fixed":
        params = FIXED_PARAMS
    else:
        params = hsvnoise_params(4, torch.Generator().manual_seed(7)).double()
    y = apply_hsvnoise(x, params)
    assert y.shape == x.shape and y.dtype == torch.float64
    for i in range(4):
        expected = _reference_hsvnoise(x[i].numpy(), params[i])
        np.testing.assert_allclose(y[i].numpy(), expected, rtol=0, atol=1e-9)
    if source == "fixed":
        assert torch.allclose(y[2], x[2], atol=1e-12)  # pow 1, mul 1, add 0, no hue shift
    # hsvnoise draws its parameters from the generator it is given (hsvnoise_params)
    drawn = hsvnoise_params(4, torch.Generator().manual_seed(7))
    assert torch.equal(hsvnoise(x, torch.Generator().manual_seed(7)), apply_hsvnoise(x, drawn))


def test_hsvnoise_in_float32_matches_the_float64_reference():
    x = torch.from_numpy(np.random.default_rng(1).random((4, 3, 5, 6))).float()
    y = apply_hsvnoise(x, FIXED_PARAMS.float())
    assert y.dtype == torch.float32
    for i in range(4):
        expected = _reference_hsvnoise(x[i].double().numpy(), FIXED_PARAMS[i])
        np.testing.assert_allclose(y[i].numpy(), expected, rtol=0, atol=1e-4)


def test_hsvnoise_of_grey_images_is_the_v_formula():
    x = torch.from_numpy(np.random.default_rng(2).random((4, 1, 5, 6)))
    for params in (FIXED_PARAMS, hsvnoise_params(4, torch.Generator().manual_seed(3)).double()):
        y = apply_hsvnoise(x, params)
        assert y.shape == x.shape
        for i in range(4):
            _, _, pow_v, _, mul_v, _, add_v = params[i].tolist()
            expected = np.clip(x[i].numpy() ** pow_v * mul_v + add_v, 0.0, 1.0)
            np.testing.assert_allclose(y[i].numpy(), expected, rtol=0, atol=1e-12)
    # the same as the RGB path on a grey RGB image whose saturation stays 0 (S offset <= 0)
    no_tint = FIXED_PARAMS[FIXED_PARAMS[:, 5] <= 0]
    grey = x[: len(no_tint)]
    rgb = apply_hsvnoise(grey.expand(-1, 3, -1, -1), no_tint)
    assert torch.allclose(rgb, apply_hsvnoise(grey, no_tint).expand(-1, 3, -1, -1), atol=1e-12)


def test_augmenter_colour_is_hsvnoise_after_the_crop():
    spec = DATASETS["cifar10"]
    u8 = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    u8 = u8.to(torch.uint8)
    aug = Augmenter(spec, torch.device("cpu"), pre_cropped=True)  # no crop: colour only
    unit = u8.float() / 255
    for view in (
        lambda g: aug.train_view(u8, g, color=True),
        lambda g: aug.exemplar_view(u8, g),
    ):
        expected = aug.normalize(hsvnoise(unit, torch.Generator().manual_seed(4)))
        assert torch.allclose(view(torch.Generator().manual_seed(4)), expected, atol=1e-6)
    assert torch.allclose(
        aug.train_view(u8, torch.Generator().manual_seed(4), color=False), aug.normalize(unit)
    )
    # with the crop: hsvnoise applies to the cropped (and flipped) images
    aug = Augmenter(spec, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    cropped = random_resized_crop(unit, 32, spec.crop_scale, spec.flips, g)
    expected = aug.normalize(hsvnoise(cropped, g))
    got = aug.train_view(u8, torch.Generator().manual_seed(5), color=True)
    assert torch.allclose(got, expected, atol=1e-6)


def test_augmenter_normalises_and_keeps_eval_images_whole():
    spec = DATASETS["digits"]
    aug = Augmenter(spec, torch.device("cpu"))
    u8 = (torch.arange(64, dtype=torch.uint8) * 4).view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    ev = aug.eval_view(u8)
    expected = (u8.float() / 255 - spec.mean[0]) / spec.std[0]
    assert torch.allclose(ev, expected, atol=1e-6)
    tr = aug.train_view(u8, torch.Generator().manual_seed(0))
    assert tr.shape == ev.shape and not torch.allclose(tr, ev)
