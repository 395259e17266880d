"""S4L-Exemplar's 8 copies are 8 independent crops also on file-backed (ImageFolder) data: the
DataLoader workers deliver [B, 8, C, H, W] training batches and `exemplar_copies` uses them."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from s4l_models.cli import main
from s4l_models.config import TrainConfig
from s4l_models.data import augment
from s4l_models.data.augment import Augmenter
from s4l_models.data.datasets import DATASETS, clear_dataset_cache, load_dataset
from s4l_models.data.sources import FileSource, IndexStream, make_source
from s4l_models.methods import PAPER_METHODS, get_method, s4l_exemplar
from s4l_models.methods.base import StepContext
from s4l_models.methods.s4l_exemplar import (
    NUM_COPIES,
    exemplar_copies,
    image_identities,
)
from s4l_models.methods.selfsup_linear import PRETEXT

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def write_textured_imagefolder(root, classes=("n01", "n02"), n_train=4, n_val=1, seed=0):
    """A tiny ImageNet-style folder of random-noise PNGs (lossless), so that two different crops
    of one image differ in their pixels."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(30 + 4 * i, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"img{i}.png")
    return root


def _first_train_batch(source, n, batch_size=3):
    stream = IndexStream(np.arange(n), batch_size, seed=0)
    return next(iter(source.train_batches(stream, 0, 1)))


def _distinct(views: torch.Tensor) -> int:
    return len({v.numpy().tobytes() for v in views})


def _ctx(spec, pre_cropped, seed=0):
    return StepContext(
        cfg=TrainConfig(),
        augment=Augmenter(spec, CPU, pre_cropped=pre_cropped),
        gen=torch.Generator().manual_seed(seed),
        num_classes=spec.num_classes,
        heads=nn.ModuleDict(),
        autocast=contextlib.nullcontext,
    )


def test_file_source_delivers_independent_crops_of_every_training_image(tmp_path):
    d = load_dataset("imagenet", str(write_textured_imagefolder(tmp_path)))
    torch.manual_seed(0)  # the workers' crops (here in-process: --workers 0)
    source = make_source(d.train, d.spec, CPU, 0, False, copies=NUM_COPIES)
    assert isinstance(source, FileSource) and source.copies == NUM_COPIES
    images, labels = _first_train_batch(source, len(d.train))
    assert images.dtype == torch.uint8 and images.shape == (3, NUM_COPIES, 3, 224, 224)
    assert labels.shape == (3,)
    for i in range(3):
        assert _distinct(images[i]) == NUM_COPIES  # 8 different crops (+ flips) of image i
    # evaluation batches are single central crops, and the same for every copies count
    ev, _ = next(iter(source.eval_batches(np.arange(3), 3)))
    single = make_source(d.train, d.spec, CPU, 0, False)
    assert single.copies == 1
    assert torch.equal(ev, next(iter(single.eval_batches(np.arange(3), 3)))[0])
    assert ev.shape == (3, 3, 224, 224)
    # one copy: the usual [B, C, H, W] training batches
    assert _first_train_batch(single, len(d.train))[0].shape == (3, 3, 224, 224)


def test_an_unreadable_image_with_copies_is_skipped_with_the_batch_shape_kept(tmp_path):
    root = write_textured_imagefolder(tmp_path)
    (root / "train" / "n01" / "img0.png").write_bytes(b"\x89PNG truncated")
    d = load_dataset("imagenet", str(root))
    source = make_source(d.train, d.spec, CPU, 0, True, copies=NUM_COPIES)
    stream = IndexStream(np.arange(len(d.train)), len(d.train), seed=0)
    images, labels = next(iter(source.train_batches(stream, 0, 1)))
    assert images.shape == (len(d.train), NUM_COPIES, 3, 224, 224)
    assert int((labels == -1).sum()) == 1 and len(source.skipped_files) == 1


def test_exemplar_copies_of_delivered_crops_keep_them_copy_major(tmp_path, monkeypatch):
    d = load_dataset("imagenet", str(write_textured_imagefolder(tmp_path)))
    torch.manual_seed(1)
    source = make_source(d.train, d.spec, CPU, 0, False, copies=NUM_COPIES)
    images, _ = _first_train_batch(source, len(d.train))
    b = images.shape[0]
    ctx = _ctx(d.spec, pre_cropped=source.pre_cropped)
    out = exemplar_copies(images, ctx)
    assert out.shape == (NUM_COPIES * b, 3, 224, 224) and bool(torch.isfinite(out).all())
    # without the colour noise, copy c*B + i is exactly delivered crop c of image i
    monkeypatch.setattr(augment, "hsvnoise", lambda x, gen: x)
    plain = exemplar_copies(images, _ctx(d.spec, pre_cropped=True))
    for c in range(NUM_COPIES):
        expected = ctx.augment.normalize(images[:, c].float() / 255)
        assert torch.allclose(plain[c * b : (c + 1) * b], expected, atol=1e-6)
    for i in range(b):
        assert _distinct(plain[i::b]) == NUM_COPIES  # the 8 copies differ geometrically
    with pytest.raises(ValueError, match="crops per image"):
        exemplar_copies(images[:, :4], ctx)


def test_in_memory_exemplar_copies_are_still_cropped_on_the_device(monkeypatch):
    spec = DATASETS["cifar10"]
    u8 = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(augment, "hsvnoise", lambda x, gen: x)
    out = exemplar_copies(u8.to(torch.uint8), _ctx(spec, pre_cropped=False))
    assert out.shape == (NUM_COPIES * 4, 3, 32, 32)
    for i in range(4):
        assert _distinct(out[i::4]) == NUM_COPIES


def test_only_the_exemplar_methods_ask_for_copies():
    assert s4l_exemplar.METHOD.train_copies == NUM_COPIES
    assert PRETEXT["exemplar"].train_copies == NUM_COPIES
    assert PRETEXT["rotation"].train_copies == 1
    for name in PAPER_METHODS:
        if name != "s4l_exemplar":
            assert get_method(name).train_copies == 1, name


def test_s4l_exemplar_trains_on_an_image_folder_with_8_crops_per_image(tmp_path, monkeypatch):
    root = write_textured_imagefolder(tmp_path / "data")
    seen = []

    def spy(images_u8, ctx):
        seen.append((tuple(images_u8.shape), _distinct(images_u8[0].cpu())))
        return exemplar_copies(images_u8, ctx)

    monkeypatch.setattr(s4l_exemplar, "exemplar_copies", spy)
    out = tmp_path / "run"
    rc = main([
        "--method", "s4l_exemplar", "--dataset", "imagenet", "--data-dir", str(root),
        "--arch", "resnet18_v2", "--width", "0.25", "--labels", "1/class", "--val-size", "2",
        "--tiny-k", "1", "--batch-size", "2", "--epochs", "2", "--workers", "0",
        "--threads", "2", "--seed", "0", "--out", str(out),
    ])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    assert metrics["steps"] == 2
    # every step: a labeled and an unlabeled batch, each of 8 independent crops per image
    assert len(seen) == 4
    assert all(shape == (2, NUM_COPIES, 3, 224, 224) for shape, _ in seen), seen
    assert all(n == NUM_COPIES for _, n in seen), seen


# Strict: remove the mark with the change to trainer.py that passes the indices (Trainer.run:
# `Batch(images, labels, torch.from_numpy(labeled_stream.batch(step)))`, and the same for the
# unlabeled batch); until then the trainer builds batches without them.
def test_a_training_step_gives_s4l_exemplar_the_dataset_index_of_every_image(tmp_path,
                                                                            monkeypatch):
    """The trainer passes each batch's dataset indices (Batch.indices), so an image drawn twice
    in one batch (10 labeled images at batch 8: the second batch spans two passes) is one
    triplet identity."""
    seen = []

    def spy(batch):
        seen.append((batch.images.clone(), batch.indices))
        return image_identities(batch)

    monkeypatch.setattr(s4l_exemplar, "image_identities", spy)
    out = tmp_path / "run"
    rc = main([
        "--method", "s4l_exemplar", "--dataset", "digits", "--arch", "resnet18_v2",
        "--width", "0.25", "--labels", "1/class", "--val-size", "100", "--batch-size", "8",
        "--epochs", "2.4", "--eval-every", "0", "--threads", "1", "--seed", "0",
        "--out", str(out),
    ])
    assert rc == 0
    train = load_dataset("digits", None).train.images
    labeled = [s for i, s in enumerate(seen) if i % 2 == 0]  # labeled, unlabeled, labeled, ...
    assert len(labeled) == 3 and all(idx is not None for _, idx in seen)
    for images, idx in seen:
        assert torch.equal(images, train[idx])  # the indices are those of the batch's images
    assert any(len(set(idx.tolist())) < len(idx) for _, idx in labeled)
