"""Tests for s4l_models.data.datasets: fake files in the real layouts, plus real digits/Fashion."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from s4l_models.data import datasets as ds
from s4l_models.data.datasets import (
    DATASETS,
    ArrayData,
    FileData,
    LoadedDataset,
    clear_dataset_cache,
    load_dataset,
    read_image,
)
from s4l_models.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------------------
# Fake-file writers
# ----------------------------------------------------------------------------------------


def _pickle_dump(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar_batch(rng, n, num_classes, label_key, offset=0):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(offset + i) % num_classes for i in range(n)]
    return data, {b"data": data, label_key: labels, b"batch_label": b"fake"}


def write_cifar10(folder, per_batch=20, n_test=10, seed=0):
    """Write a fake CIFAR-10 python layout; return (train data, train labels, test data)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_data, train_labels = [], []
    for i in range(1, 6):
        data, batch = _cifar_batch(rng, per_batch, 10, b"labels", offset=i)
        train_data.append(data)
        train_labels += batch[b"labels"]
        _pickle_dump(os.path.join(folder, f"data_batch_{i}"), batch)
    test_data, test = _cifar_batch(rng, n_test, 10, b"labels")
    _pickle_dump(os.path.join(folder, "test_batch"), test)
    names = [f"class{i}".encode() for i in range(10)]
    _pickle_dump(os.path.join(folder, "batches.meta"), {b"label_names": names, b"num_vis": 3072})
    return np.concatenate(train_data), np.array(train_labels), test_data


def write_cifar100(folder, n_train=40, n_test=12, seed=1):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_data, train = _cifar_batch(rng, n_train, 100, b"fine_labels", offset=7)
    train[b"coarse_labels"] = [0] * n_train
    _pickle_dump(os.path.join(folder, "train"), train)
    test_data, test = _cifar_batch(rng, n_test, 100, b"fine_labels")
    _pickle_dump(os.path.join(folder, "test"), test)
    names = [f"fine{i}".encode() for i in range(100)]
    meta = {b"fine_label_names": names, b"coarse_label_names": []}
    _pickle_dump(os.path.join(folder, "meta"), meta)
    return train_data, np.array(train[b"fine_labels"]), test_data


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">I", (0x08 << 8) | array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder, n_train=30, n_test=10, gz=True, seed=2):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr)
        if gz:
            with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as f:
                f.write(raw)
        else:
            with open(os.path.join(folder, stem), "wb") as f:
                f.write(raw)
    return arrays


def _jpeg(path, color=(200, 30, 30), size=(12, 10)):
    Image.new("RGB", size, color).save(path, format="JPEG")


def write_imagefolder(root, classes=("n01", "n02", "n03"), n_train=3, n_val=2):
    for split, n in (("train", n_train), ("val", n_val)):
        for ci, c in enumerate(classes):
            d = os.path.join(root, split, c)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                ext = [".JPEG", ".jpg", ".png"][i % 3]
                path = os.path.join(d, f"img{i}{ext}")
                if ext == ".png":
                    Image.new("RGB", (9, 7), (0, 255, 0)).save(path, format="PNG")
                else:
                    _jpeg(path, (40 * ci, 100, 10))
            # Non-image files and hidden files are ignored.
            with open(os.path.join(d, "README.txt"), "w") as f:
                f.write("not an image")
    return root


# ----------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------


def test_specs_are_consistent():
    assert set(DATASETS) == {
        "digits", "fashion_mnist", "cifar10", "cifar100", "imagenet", "synthetic32", "synthetic224"
    }
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert 0 < spec.crop_scale[0] < spec.crop_scale[1] <= 1.0
    assert not DATASETS["digits"].flips and DATASETS["cifar10"].flips
    assert DATASETS["imagenet"].default_val_size == 50046
    assert not DATASETS["imagenet"].in_memory
    assert DATASETS["fashion_mnist"].default_data_dir == "/usr/share/datasets/fashion-mnist"


def test_synthetic_datasets_have_their_declared_shapes():
    d = load_dataset("synthetic32")
    assert d.train.images.shape[1:] == (3, 32, 32) and d.train.images.dtype == torch.uint8
    assert d.test is None
    counts = torch.bincount(d.train.labels, minlength=10)
    assert counts.min() == counts.max()  # balanced, so stratified splits work
    assert torch.equal(load_dataset("synthetic32").train.images[:5], d.train.images[:5])


def test_digits_mean_std_match_data():
    d = load_dataset("digits")
    x = torch.cat([d.train.images, d.test.images]).float() / 255
    assert x.mean().item() == pytest.approx(DATASETS["digits"].mean[0], abs=1e-4)
    assert x.std().item() == pytest.approx(DATASETS["digits"].std[0], abs=1e-3)


# ----------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------


def test_digits_fixed_stratified_split():
    d = load_dataset("digits", data_dir="/ignored/anyway")
    assert isinstance(d, LoadedDataset) and isinstance(d.train, ArrayData)
    assert len(d.train) == 1500 and len(d.test) == 297
    assert d.train.images.shape == (1500, 1, 8, 8) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (297, 1, 8, 8)
    assert d.train.labels.dtype == torch.int64
    assert d.classes == [str(i) for i in range(10)]
    assert int(d.train.images.max()) == 255 and int(d.train.images.min()) == 0
    counts = torch.bincount(d.test.labels, minlength=10)
    assert all(abs(c - 29.7) <= 1 for c in counts.tolist())
    # Identical across loads, also after the cache is dropped.
    clear_dataset_cache()
    d2 = load_dataset("digits")
    assert d2 is not d
    assert torch.equal(d.test.images, d2.test.images) and torch.equal(d.test.labels, d2.test.labels)
    assert torch.equal(d.train.labels, d2.train.labels)
    # Train and test are disjoint and together are the whole dataset (as multisets of rows).
    from sklearn.datasets import load_digits

    full = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    rows = {r.tobytes() for r in full}
    both = torch.cat([d.train.images, d.test.images]).numpy()[:, 0]
    assert {r.tobytes() for r in both} == rows and len(both) == len(full)


def test_cache_returns_same_object():
    a = load_dataset("digits")
    assert load_dataset("digits") is a


# ----------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("subfolder", [False, True])
def test_cifar10_loads(tmp_path, subfolder):
    folder = tmp_path / "cifar-10-batches-py" if subfolder else tmp_path
    train_data, train_labels, test_data = write_cifar10(folder)
    # Plant known pixels: image 7, channel G (1), row 5, col 9; image 0, B (2), h 31, w 0.
    train_data[7, 1 * 1024 + 5 * 32 + 9] = 123
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"data"][7, 1 * 1024 + 5 * 32 + 9] = 123
    batch[b"data"][0, 2 * 1024 + 31 * 32 + 0] = 77
    train_data[0, 2 * 1024 + 31 * 32] = 77
    _pickle_dump(folder / "data_batch_1", batch)

    d = load_dataset("cifar10", str(tmp_path))
    assert d.spec is DATASETS["cifar10"]
    assert d.train.images.shape == (100, 3, 32, 32) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (10, 3, 32, 32)
    assert d.train.labels.dtype == torch.int64
    assert d.train.labels.tolist() == train_labels.tolist()
    assert d.train.images[7, 1, 5, 9] == 123 and d.train.images[0, 2, 31, 0] == 77
    assert torch.equal(d.train.images.reshape(100, -1), torch.from_numpy(train_data))
    assert torch.equal(d.test.images.reshape(10, -1), torch.from_numpy(test_data))
    assert d.classes == [f"class{i}" for i in range(10)]
    # Cached per resolved folder; same folder via a different spelling hits the cache.
    assert load_dataset("cifar10", str(tmp_path) + "/.") is d


def test_cifar10_str_keys_and_protocol5(tmp_path):
    rng = np.random.default_rng(3)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        _pickle_dump(tmp_path / name, {"data": data, "labels": [1, 2, 3, 4]}, protocol=5)
    _pickle_dump(tmp_path / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}, 5)
    d = load_dataset("cifar10", str(tmp_path))
    assert len(d.train) == 20 and d.classes[3] == "c3"


@pytest.mark.parametrize("subfolder", [False, True])
def test_cifar100_loads(tmp_path, subfolder):
    folder = tmp_path / "cifar-100-python" if subfolder else tmp_path
    train_data, train_labels, test_data = write_cifar100(folder)
    d = load_dataset("cifar100", str(tmp_path))
    assert d.train.images.shape == (40, 3, 32, 32) and d.test.images.shape == (12, 3, 32, 32)
    assert d.train.labels.tolist() == train_labels.tolist()
    assert torch.equal(d.train.images.reshape(40, -1), torch.from_numpy(train_data))
    assert torch.equal(d.test.images.reshape(12, -1), torch.from_numpy(test_data))
    assert len(d.classes) == 100 and d.classes[42] == "fine42"


def test_cifar_errors(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar10")
    assert _one_line(err) == (
        "cifar10 needs --data-dir pointing at the folder with data_batch_1..5 and test_batch"
    )
    with pytest.raises(UserError) as err:
        load_dataset("cifar100", None)
    assert "cifar100 needs --data-dir" in _one_line(err)

    missing = tmp_path / "nope"
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(missing))
    assert f"--data-dir {missing} does not exist" in _one_line(err)

    afile = tmp_path / "cifar-10-python.tar.gz"
    afile.write_bytes(b"x")
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(afile))
    assert "is not a directory" in _one_line(err) and str(afile) in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(empty))
    msg = _one_line(err)
    assert str(empty) in msg and "data_batch_1" in msg and "cifar-10-batches-py" in msg

    # One file missing: named.
    partial = tmp_path / "partial"
    write_cifar10(partial, per_batch=2, n_test=2)
    os.remove(partial / "data_batch_4")
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(partial))
    assert "data_batch_4" in _one_line(err) and str(partial) in str(err.value)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "not_dict", "bad_shape", "label_count", "label_range", "evil"],
)
def test_cifar_malformed_pickle_names_file(tmp_path, damage):
    write_cifar10(tmp_path, per_batch=3, n_test=3)
    target = tmp_path / "data_batch_3"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "garbage":
        target.write_bytes(b"\x00not a pickle at all")
    elif damage == "not_dict":
        _pickle_dump(target, [1, 2, 3])
    elif damage == "bad_shape":
        _pickle_dump(target, {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})
    elif damage == "label_count":
        _pickle_dump(target, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]})
    elif damage == "label_range":
        _pickle_dump(target, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 10]})
    elif damage == "evil":
        _pickle_dump(target, {b"data": os.getcwd, b"labels": []})  # a non-numpy global
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(tmp_path))
    assert str(target) in _one_line(err)


def test_cifar_bad_meta_names_file(tmp_path):
    write_cifar10(tmp_path, per_batch=2, n_test=2)
    _pickle_dump(tmp_path / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(tmp_path))
    assert str(tmp_path / "batches.meta") in _one_line(err)
    _pickle_dump(tmp_path / "batches.meta", {b"other": 1})
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(tmp_path))
    assert str(tmp_path / "batches.meta") in _one_line(err) and "label_names" in str(err.value)


# ----------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_fake_idx(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    d = load_dataset("fashion_mnist", str(tmp_path))
    assert d.train.images.shape == (30, 1, 28, 28) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (10, 1, 28, 28)
    assert d.train.labels.dtype == torch.int64
    assert d.train.labels.tolist() == (np.arange(30) % 10).tolist()
    assert d.test.labels.tolist() == ((np.arange(10) * 3) % 10).tolist()
    assert torch.equal(d.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(d.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot" and len(d.classes) == 10


def _rewrite_gz(path, raw):
    with gzip.open(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize(
    "damage", ["missing", "magic", "truncated_body", "short_header", "bad_gzip", "count", "size"]
)
def test_fashion_mnist_bad_files_name_file(tmp_path, damage):
    write_fashion(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    named = images
    rng = np.random.default_rng(0)
    if damage == "missing":
        os.remove(labels)
        named = tmp_path / "train-labels-idx1-ubyte"
    elif damage == "magic":
        raw = bytearray(gzip.decompress(images.read_bytes()))
        raw[3] = 1  # claims 1-d
        _rewrite_gz(images, bytes(raw))
    elif damage == "truncated_body":
        _rewrite_gz(images, gzip.decompress(images.read_bytes())[:-50])
    elif damage == "short_header":
        _rewrite_gz(images, b"\x00\x00\x08")
    elif damage == "bad_gzip":
        images.write_bytes(images.read_bytes()[:40])  # truncated gzip stream
    elif damage == "count":
        _rewrite_gz(labels, _idx_bytes(np.zeros(29, np.uint8)))
    elif damage == "size":
        _rewrite_gz(images, _idx_bytes(rng.integers(0, 256, (30, 32, 32), dtype=np.uint8)))
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist", str(tmp_path))
    assert str(named) in _one_line(err)


def test_fashion_mnist_missing_dir_and_default(tmp_path, monkeypatch):
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist", str(tmp_path / "absent"))
    assert str(tmp_path / "absent") in _one_line(err)
    # A missing default folder: named, with the Debian package as the fix.
    spec = DATASETS["fashion_mnist"]
    fake = tmp_path / "no-such-default"
    moved = dataclasses.replace(spec, default_data_dir=str(fake))
    monkeypatch.setitem(ds.DATASETS, "fashion_mnist", moved)
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist")
    assert str(fake) in _one_line(err) and "--data-dir" in str(err.value)


def test_real_fashion_mnist_default_location():
    if not os.path.isdir(ds.FASHION_MNIST_DEFAULT_DIR):
        pytest.skip(f"{ds.FASHION_MNIST_DEFAULT_DIR} absent (Debian package dataset-fashion-mnist)")
    d = load_dataset("fashion_mnist")
    assert d.train.images.shape == (60000, 1, 28, 28) and d.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train.labels).tolist() == [6000] * 10
    assert torch.bincount(d.test.labels).tolist() == [1000] * 10
    assert load_dataset("fashion_mnist", ds.FASHION_MNIST_DEFAULT_DIR) is d


# ----------------------------------------------------------------------------------------
# ImageNet (ImageFolder)
# ----------------------------------------------------------------------------------------


def test_imagefolder_loads(tmp_path):
    write_imagefolder(tmp_path)
    (tmp_path / "train" / ".hidden").mkdir()  # hidden folders are not classes
    d = load_dataset("imagenet", str(tmp_path))
    assert isinstance(d.train, FileData) and isinstance(d.test, FileData)
    assert d.classes == ["n01", "n02", "n03"]
    assert len(d.train) == 9 and len(d.test) == 6
    assert d.train.labels.dtype == torch.int64
    assert d.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(os.path.isabs(p) for p in d.train.paths)
    names = [os.path.basename(p) for p in d.train.paths[:3]]
    assert names == ["img0.JPEG", "img1.jpg", "img2.png"]
    assert d.train.paths == sorted(d.train.paths)
    assert all(f"{os.sep}val{os.sep}" in p for p in d.test.paths)
    # Not cached (file lists may change) and decodable on the fly.
    assert load_dataset("imagenet", str(tmp_path)) is not d
    img = read_image(d.train.paths[3])  # class n02, JPEG colour (40, 100, 10)
    assert img.dtype == torch.uint8 and img.shape == (3, 10, 12)
    assert abs(int(img[0, 5, 5]) - 40) <= 6 and abs(int(img[1, 5, 5]) - 100) <= 6
    png = read_image(d.train.paths[2])
    assert png.shape == (3, 7, 9) and png[:, 0, 0].tolist() == [0, 255, 0]


def test_imagefolder_val_subset_of_classes_is_fine(tmp_path):
    write_imagefolder(tmp_path)
    for f in os.listdir(tmp_path / "val" / "n02"):
        os.remove(tmp_path / "val" / "n02" / f)
    os.rmdir(tmp_path / "val" / "n02")
    d = load_dataset("imagenet", str(tmp_path))
    assert d.test.labels.tolist() == [0, 0, 2, 2]


def test_read_image_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "g.jpg"
    Image.new("L", (5, 4), 128).save(path, format="JPEG")
    img = read_image(str(path))
    assert img.shape == (3, 4, 5) and img.dtype == torch.uint8


def test_read_image_corrupt_names_file(tmp_path):
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(UserError) as err:
        read_image(str(bad))
    assert _one_line(err) == (
        f"cannot read image file {bad} (corrupt or not an image); remove it or pass "
        f"--skip-bad-images"
    )
    with pytest.raises(UserError) as err:
        read_image(str(tmp_path / "gone.JPEG"))
    assert str(tmp_path / "gone.JPEG") in _one_line(err)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("imagenet")
    assert "imagenet needs --data-dir" in _one_line(err)

    # No train/ folder.
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(tmp_path / "a"))
    assert str(tmp_path / "a" / "train") in _one_line(err)

    # Empty class folder in train.
    root = write_imagefolder(tmp_path / "b")
    (root / "train" / "n04").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(root))
    assert str(root / "train" / "n04") in _one_line(err) and "no images" in str(err.value)

    # Val class not among train classes.
    root = write_imagefolder(tmp_path / "c")
    os.makedirs(root / "val" / "n99")
    _jpeg(root / "val" / "n99" / "x.JPEG")
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(root))
    assert str(root / "val" / "n99") in _one_line(err)

    # Missing val/.
    root = tmp_path / "d"
    write_imagefolder(root)
    for c in os.listdir(root / "val"):
        for f in os.listdir(root / "val" / c):
            os.remove(root / "val" / c / f)
        os.rmdir(root / "val" / c)
    os.rmdir(root / "val")
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(root))
    assert str(root / "val") in _one_line(err)

    # Flat val/ (the raw ILSVRC val layout): told to sort into class folders.
    (root / "val").mkdir()
    _jpeg(root / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(root))
    assert str(root / "val") in _one_line(err) and "class folders" in str(err.value)

    # train/ without class folders.
    root = tmp_path / "e"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    with pytest.raises(UserError) as err:
        load_dataset("imagenet", str(root))
    assert str(root / "train") in _one_line(err)


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserError) as err:
        load_dataset("mnist")
    msg = _one_line(err)
    assert "'mnist'" in msg
    for name in DATASETS:
        assert name in msg


def test_an_adopted_dataset_is_served_without_reading_files_even_where_the_folder_is_missing(
    tmp_path,
):
    from s4l_models.data.datasets import (
        adopt_dataset,
        clear_dataset_cache,
        load_dataset,
    )

    digits = load_dataset("digits")
    clear_dataset_cache()
    adopt_dataset("digits", None, digits)
    assert load_dataset("digits") is digits  # no second parse
    # a sweep's worker on a node without the driver's Fashion-MNIST folder
    fake = dataclasses.replace(digits, spec=DATASETS["fashion_mnist"])
    missing = str(tmp_path / "not-here")
    adopt_dataset("fashion_mnist", missing, fake)
    assert load_dataset("fashion_mnist", missing) is fake
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("fashion_mnist", str(tmp_path / "elsewhere"))
    clear_dataset_cache()
