"""Datasets by name: their static facts (`DATASETS`) and `load_dataset(name, data_dir)`.

Each dataset has a `DatasetSpec` (classes, input size, channels, whether flips preserve the
label, the default size of the custom validation split held out of train, the random-resized
crop's area range, normalisation mean/std, ...). `load_dataset` reads the files and returns a
`LoadedDataset` with a train split, a test split kept only for final reporting, and class names.
Small datasets are held in memory as one uint8 tensor [N, C, H, W] (`ArrayData`); ImageNet is
a list of file paths decoded on the fly with `read_image` (`FileData`).

Layouts accepted (nothing is ever downloaded; files must already be on disk):

- ``digits``: scikit-learn's bundled 8x8 digits (no files needed; ``data_dir`` is ignored).
  There is no public test split, so a FIXED class-stratified 297-image test split is held out
  (``random_state=0``, independent of any user seed); train is the other 1,500 images.
- ``fashion_mnist``: the four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, gzipped (``.gz``) or not. Default
  folder: ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
- ``cifar10``: the "python version" pickles ``data_batch_1``..``data_batch_5``, ``test_batch``,
  ``batches.meta``, directly in ``data_dir`` or in its ``cifar-10-batches-py/`` subfolder.
- ``cifar100``: the pickles ``train``, ``test``, ``meta`` (fine labels), directly in
  ``data_dir`` or in its ``cifar-100-python/`` subfolder.
- ``imagenet``: ILSVRC-2012 in ImageFolder layout, ``train/<wnid>/*.JPEG`` and
  ``val/<wnid>/*.JPEG`` (.jpeg/.jpg/.png, any case). The public val split is our test split.

CIFAR pickles are read with a restricted unpickler that only resolves the numpy names such
files contain, so a foreign pickle cannot run code. Every problem with the user's files raises
`UserError` with one line naming the file or folder and the fix. In-memory datasets are cached
per process (keyed by name and resolved folder); callers must not mutate the returned object.
"""

from __future__ import annotations

import gzip
import os
import pickle
import threading
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError

__all__ = [
    "DATASETS",
    "ArrayData",
    "DatasetSpec",
    "FileData",
    "LoadedDataset",
    "clear_dataset_cache",
    "load_dataset",
    "read_image",
]


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts of a dataset."""

    name: str
    num_classes: int
    image_size: int  # side of the (square) model input
    channels: int  # 1 or 3
    flips: bool  # are horizontal flips label-preserving? (not for digits)
    default_val_size: int  # size of the custom validation split held out of train
    crop_scale: tuple[float, float]  # area range of the inception-style random-resized crop
    mean: tuple[float, ...]  # per-channel mean of [0,1] pixels, for input normalisation
    std: tuple[float, ...]
    in_memory: bool  # True: held as one uint8 tensor; False: files decoded on the fly
    default_data_dir: str | None
    # VAT's eps for this dataset relative to the paper's ImageNet values (eps_vat 25-50 in
    # [-1, 1] image units): the paper picks eps below half the distance between neighbouring
    # images, which depends on the image size and content (bench/vat_eps_heuristic.py)
    vat_eps_scale: float = 1.0


FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        num_classes=10,
        image_size=8,
        channels=1,
        flips=False,
        default_val_size=500,
        # Ours: inception's 0.08 lower bound leaves ~2x2 pixels of an 8x8 digit.
        crop_scale=(0.5, 1.0),
        # Computed once over all 1,797 images after scaling to uint8 (round(v*255/16)) / 255.
        mean=(0.3053,),
        std=(0.3759,),
        in_memory=True,
        default_data_dir=None,
        # VAT eps: grid top 50*0.02 = 1.0 sits below half the median nearest-neighbour distance
        # between training images, 1.03 in [-1, 1] units (dimension-scaled 50: 1.03)
        vat_eps_scale=0.02,
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        num_classes=10,
        image_size=28,
        channels=1,
        flips=True,
        default_val_size=5000,
        # Ours: a crop keeps at least 16 px of side (sqrt(0.35) * 28); 0.08 would leave 8.
        crop_scale=(0.35, 1.0),
        mean=(0.2860,),
        std=(0.3530,),
        in_memory=True,
        default_data_dir=FASHION_MNIST_DEFAULT_DIR,
        # VAT eps: grid top 50*0.068 = 3.4 sits below half the median nearest-neighbour
        # distance, 3.46 in [-1, 1] units (dimension-scaled 50: 3.61)
        vat_eps_scale=0.068,
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        num_classes=10,
        image_size=32,
        channels=3,
        flips=True,
        default_val_size=5000,
        # Ours: a crop keeps at least 16 px of side (sqrt(0.25) * 32); 0.08 would leave 9.
        crop_scale=(0.25, 1.0),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        in_memory=True,
        default_data_dir=None,
        # VAT eps: not measured (no files here); 50 scaled to 32x32x3 at the same RMS change
        # per pixel is 7.14 (on digits and Fashion-MNIST within 4% of half the measured median
        # neighbour distance), rounded down: grid top 50*0.142 = 7.1
        vat_eps_scale=0.142,
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        num_classes=100,
        image_size=32,
        channels=3,
        flips=True,
        default_val_size=5000,
        # Ours: a crop keeps at least 16 px of side (sqrt(0.25) * 32); 0.08 would leave 9.
        crop_scale=(0.25, 1.0),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        in_memory=True,
        default_data_dir=None,
        # VAT eps: as cifar10 (same image size; not measured)
        vat_eps_scale=0.142,
    ),
    "imagenet": DatasetSpec(
        name="imagenet",
        num_classes=1000,
        image_size=224,
        channels=3,
        flips=True,
        default_val_size=50046,  # the paper's custom validation split
        # torchvision's inception crop (the released TF crop: area 0.05-1, README "Where we differ")
        crop_scale=(0.08, 1.0),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        in_memory=False,
        default_data_dir=None,
        vat_eps_scale=1.0,  # VAT eps: the paper's own grid {50, ..., 25} and 40
    ),
    # Random images of the CIFAR and ImageNet shapes, generated in memory from a fixed seed:
    # for throughput benchmarks (bench/trainer_throughput.py), where the pixels do not matter.
    "synthetic32": DatasetSpec(
        name="synthetic32",
        num_classes=10,
        image_size=32,
        channels=3,
        flips=True,
        default_val_size=500,
        crop_scale=(0.25, 1.0),
        mean=(0.5, 0.5, 0.5),
        std=(0.29, 0.29, 0.29),
        in_memory=True,
        default_data_dir=None,
        # VAT eps: cifar10's (random pixels have no meaningful neighbours)
        vat_eps_scale=0.142,
    ),
    "synthetic224": DatasetSpec(
        name="synthetic224",
        num_classes=1000,
        image_size=224,
        channels=3,
        flips=True,
        default_val_size=1000,
        crop_scale=(0.08, 1.0),
        mean=(0.5, 0.5, 0.5),
        std=(0.29, 0.29, 0.29),
        in_memory=True,
        default_data_dir=None,
        vat_eps_scale=1.0,  # VAT eps: imagenet's
    ),
}
# Images per synthetic dataset (train split), enough for a few full batches plus validation.
SYNTHETIC_SIZES = {"synthetic32": 10_000, "synthetic224": 4_000}

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

# What `data_dir` must hold, for error messages.
_NEEDS = {
    "fashion_mnist": "the folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
    "cifar10": "the folder with data_batch_1..5 and test_batch",
    "cifar100": "the folder with the CIFAR-100 python files train, test and meta",
    "imagenet": "the ILSVRC-2012 folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
}


@dataclass
class ArrayData:
    """An in-memory split."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class FileData:
    """A file-backed split (imagenet): decode `paths[i]` with `read_image`."""

    paths: list[str]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class LoadedDataset:
    spec: DatasetSpec
    train: ArrayData | FileData
    test: ArrayData | FileData | None
    classes: list[str]


# ----------------------------------------------------------------------------------------
# Entry point and cache
# ----------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str | None], LoadedDataset] = {}
_CACHE_LOCK = threading.Lock()


def clear_dataset_cache() -> None:
    """Forget every cached in-memory dataset (the next `load_dataset` re-reads the files)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cache_key(name: str, data_dir: str | None) -> tuple[str, str | None]:
    """The cache key of a dataset: its name and its folder as given (the default when None),
    resolved but not checked; None for embedded data or a folder that has to be given."""
    if name not in _NEEDS:
        return (name, None)
    folder = data_dir if data_dir is not None else DATASETS[name].default_data_dir
    return (name, os.path.realpath(os.path.expanduser(folder)) if folder else None)


def adopt_dataset(name: str, data_dir: str | None, loaded: LoadedDataset) -> None:
    """Make `loaded` what `load_dataset(name, data_dir)` returns in this process.

    A sweep's driver loads an in-memory dataset once and hands it to every trial through Ray's
    object store, so that a trial's worker does not parse the files (or, for digits, import
    scikit-learn, ~1.3 s) again. The folder is not checked, so on a node where it does not
    exist the data is still served under the name and folder as given.
    """
    if not loaded.spec.in_memory or loaded.spec.name != name:
        return
    with _CACHE_LOCK:
        _CACHE.setdefault(_cache_key(name, data_dir), loaded)


def load_dataset(name: str, data_dir: str | None = None) -> LoadedDataset:
    """Load dataset `name` from `data_dir` (or its default folder); see the module docstring.

    In-memory datasets are cached per (name, resolved folder): repeated calls return the same
    object, which callers must not mutate. Raises `UserError` for any problem with the input.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    needs_files = name in _NEEDS
    key = _cache_key(name, data_dir)
    if spec.in_memory and (key[1] is not None or not needs_files):
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:
            return cached
    root = _resolve_data_dir(spec, data_dir) if needs_files else None
    loader = {
        "digits": lambda: _load_digits(spec),
        "fashion_mnist": lambda: _load_fashion_mnist(spec, root),
        "cifar10": lambda: _load_cifar(spec, root),
        "cifar100": lambda: _load_cifar(spec, root),
        "imagenet": lambda: _load_imagenet(spec, root),
        "synthetic32": lambda: _load_synthetic(spec),
        "synthetic224": lambda: _load_synthetic(spec),
    }[name]
    loaded = loader()
    if spec.in_memory:
        with _CACHE_LOCK:
            loaded = _CACHE.setdefault(key, loaded)
    return loaded


def _resolve_data_dir(spec: DatasetSpec, data_dir: str | None) -> str:
    if data_dir is None:
        if spec.default_data_dir is None:
            raise UserError(f"{spec.name} needs --data-dir pointing at {_NEEDS[spec.name]}")
        if not os.path.isdir(spec.default_data_dir):
            raise UserError(
                f"{spec.name}: default data folder {spec.default_data_dir} does not exist; "
                f"install the Debian package dataset-fashion-mnist or pass --data-dir "
                f"pointing at {_NEEDS[spec.name]}"
            )
        data_dir = spec.default_data_dir
    path = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.exists(path):
        raise UserError(
            f"--data-dir {data_dir} does not exist; pass the {spec.name} folder "
            f"({_NEEDS[spec.name]})"
        )
    if not os.path.isdir(path):
        raise UserError(
            f"--data-dir {data_dir} is not a directory; pass the (extracted) {spec.name} "
            f"folder ({_NEEDS[spec.name]})"
        )
    return path


# ----------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------

DIGITS_TEST_SIZE = 297


def _load_digits(spec: DatasetSpec) -> LoadedDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N,1,8,8]
    labels = bunch.target.astype(np.int64)
    # Fixed test split: stratified by class, random_state=0, never a user seed. Both index
    # sets are sorted so each split keeps the original file order.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=0
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    def split(idx: np.ndarray) -> ArrayData:
        return ArrayData(
            images=torch.from_numpy(np.ascontiguousarray(images[idx])),
            labels=torch.from_numpy(np.ascontiguousarray(labels[idx])),
        )

    return LoadedDataset(
        spec=spec,
        train=split(train_idx),
        test=split(test_idx),
        classes=[str(i) for i in range(10)],
    )


def _load_synthetic(spec: DatasetSpec) -> LoadedDataset:
    n = SYNTHETIC_SIZES[spec.name]
    g = torch.Generator().manual_seed(0)
    shape = (n, spec.channels, spec.image_size, spec.image_size)
    images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % spec.num_classes  # balanced, so stratified splits work
    classes = [str(i) for i in range(spec.num_classes)]
    return LoadedDataset(spec=spec, train=ArrayData(images, labels), test=None, classes=classes)


# ----------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# ----------------------------------------------------------------------------------------

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx_file(root: str, stem: str) -> str:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise UserError(
        f"{os.path.join(root, stem)}.gz (or without .gz) is missing; fashion_mnist "
        f"--data-dir must be {_NEEDS['fashion_mnist']}"
    )


def _read_idx(path: str, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file with `ndim` dimensions (gzipped if it ends in .gz)."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(
            f"cannot read IDX file {path} ({err}); re-extract or re-download it"
        ) from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"IDX file {path} is truncated ({len(raw)} bytes); replace it")
    magic = (0x08 << 8) | ndim  # 0x0000_08_nd: unsigned bytes, nd dimensions
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise UserError(
            f"IDX file {path} has magic number 0x{got:08x}, expected 0x{magic:08x} "
            f"(unsigned bytes, {ndim}-d); is it the right file?"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise UserError(
            f"IDX file {path} holds {len(raw)} bytes but its header {list(dims)} needs "
            f"{expected}; the file is truncated or corrupt, replace it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_fashion_split(spec: DatasetSpec, root: str, split: str) -> ArrayData:
    images_stem, labels_stem = _FASHION_FILES[split]
    images_path = _find_idx_file(root, images_stem)
    labels_path = _find_idx_file(root, labels_stem)
    images = _read_idx(images_path, 3)
    labels = _read_idx(labels_path, 1)
    side = spec.image_size
    if images.shape[1:] != (side, side):
        raise UserError(
            f"IDX file {images_path} holds {images.shape[1]}x{images.shape[2]} images, "
            f"expected {side}x{side}; is it the Fashion-MNIST file?"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; replace the mismatched file"
        )
    if len(labels) and int(labels.max()) >= spec.num_classes:
        raise UserError(
            f"IDX file {labels_path} has label {int(labels.max())}, expected 0.."
            f"{spec.num_classes - 1}; is it the Fashion-MNIST labels file?"
        )
    return ArrayData(
        images=torch.from_numpy(images[:, None].copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


def _load_fashion_mnist(spec: DatasetSpec, root: str) -> LoadedDataset:
    return LoadedDataset(
        spec=spec,
        train=_load_fashion_split(spec, root, "train"),
        test=_load_fashion_split(spec, root, "test"),
        classes=list(FASHION_MNIST_CLASSES),
    )


# ----------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)
# ----------------------------------------------------------------------------------------

_CIFAR_LAYOUT = {
    # name: (subfolder, train files, test file, meta file, label key, names key)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names"),
}

# The only globals a CIFAR pickle (numpy arrays, python-2 or -3 written) needs.
_PICKLE_NUMPY_MODULES = {
    "numpy",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
}
_PICKLE_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar"}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module == "_codecs" and name == "encode") or (
            module in _PICKLE_NUMPY_MODULES and name in _PICKLE_NUMPY_NAMES
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _read_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err}); check its permissions"
                        ) from None
    except Exception as err:  # truncated/garbled pickles raise many types
        raise UserError(
            f"{path} is not a readable CIFAR pickle ({type(err).__name__}: {err}); "
            f"the file is truncated or corrupt, re-extract the archive"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a CIFAR pickle (holds a {type(obj).__name__}, not a "
                        "dict); re-extract the archive")
    # Keys are bytes in the official (python-2 written) files; accept str keys too.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _get(d: dict, key: str, path: str):
    if key not in d:
        raise UserError(f"{path} has no {key!r} entry; is it the right CIFAR file?")
    return d[key]


def _read_cifar_batch(path: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    data = _get(d, "data", path)
    labels = _get(d, label_key, path)
    try:
        data = np.asarray(data)
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{path} holds malformed data/labels; re-extract the archive") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"{path} holds data of shape {list(data.shape)} ({data.dtype}), expected uint8 "
            f"[N, 3072]; the file is corrupt or not a CIFAR batch: re-extract the archive"
        )
    if labels.ndim != 1 or len(labels) != len(data):
        raise UserError(
            f"{path} holds {len(data)} images but {labels.size} labels; the file is corrupt: "
            "re-extract the archive"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path} has labels outside 0..{num_classes - 1}; is it the right CIFAR file?"
        )
    # Each row is the R plane, then G, then B, each 32x32 row-major -> [3, 32, 32].
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(spec: DatasetSpec, root: str) -> str:
    subfolder, train_files, test_file, meta_file, _, _ = _CIFAR_LAYOUT[spec.name]
    required = [*train_files, test_file, meta_file]
    folder = root
    if not os.path.isfile(os.path.join(root, required[0])) and os.path.isdir(
        os.path.join(root, subfolder)
    ):
        folder = os.path.join(root, subfolder)
    missing = [f for f in required if not os.path.isfile(os.path.join(folder, f))]
    if len(missing) == len(required):
        raise UserError(
            f"no {spec.name} files in {root}: expected {', '.join(required)} directly there "
            f"or in its {subfolder}/ subfolder (the extracted 'python version' archive)"
        )
    if missing:
        raise UserError(
            f"{spec.name} folder {folder} lacks {', '.join(missing)}; expected "
            f"{', '.join(required)} (re-extract the 'python version' archive)"
        )
    return folder


def _load_cifar(spec: DatasetSpec, root: str) -> LoadedDataset:
    _, train_files, test_file, meta_file, label_key, names_key = _CIFAR_LAYOUT[spec.name]
    folder = _cifar_folder(spec, root)

    def split(files: list[str]) -> ArrayData:
        parts = [
            _read_cifar_batch(os.path.join(folder, f), label_key, spec.num_classes) for f in files
        ]
        images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        return ArrayData(
            images=torch.from_numpy(np.ascontiguousarray(images)),
            labels=torch.from_numpy(np.ascontiguousarray(labels)),
        )

    meta_path = os.path.join(folder, meta_file)
    names = _get(_read_pickle(meta_path), names_key, meta_path)
    if not isinstance(names, (list, tuple)) or len(names) != spec.num_classes:
        raise UserError(
            f"{meta_path} lists {len(names) if isinstance(names, (list, tuple)) else '?'} "
            f"class names, expected {spec.num_classes}; is it the {spec.name} meta file?"
        )
    classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    return LoadedDataset(
        spec=spec, train=split(train_files), test=split([test_file]), classes=classes
    )


# ----------------------------------------------------------------------------------------
# ImageNet (ImageFolder layout, decoded on the fly)
# ----------------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def _image_files(class_dir: str) -> list[str]:
    with os.scandir(class_dir) as it:
        names = sorted(e.name for e in it if _is_image_name(e.name) and e.is_file())
    if not names:
        raise UserError(
            f"class folder {class_dir} holds no images (.jpeg/.jpg/.png); add its images "
            f"or remove the folder"
        )
    return [os.path.join(class_dir, n) for n in names]


def _require_split_dir(root: str, split: str) -> str:
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise UserError(f"{path} is missing; imagenet --data-dir must be {_NEEDS['imagenet']}")
    return path


def _load_imagenet(spec: DatasetSpec, root: str) -> LoadedDataset:
    train_dir = _require_split_dir(root, "train")
    val_dir = _require_split_dir(root, "val")
    classes = _subdirs(train_dir)
    if not classes:
        raise UserError(
            f"{train_dir} has no class folders; expected train/<wnid>/*.JPEG (ImageFolder)"
        )
    index = {c: i for i, c in enumerate(classes)}

    def split(split_dir: str, class_names: list[str]) -> FileData:
        paths: list[str] = []
        labels: list[int] = []
        for c in class_names:
            files = _image_files(os.path.join(split_dir, c))
            paths.extend(files)
            labels.extend([index[c]] * len(files))
        return FileData(paths=paths, labels=torch.tensor(labels, dtype=torch.int64))

    val_classes = _subdirs(val_dir)
    if not val_classes:
        with os.scandir(val_dir) as it:
            flat = any(_is_image_name(e.name) for e in it)
        hint = (
            " (its images lie directly in val/: sort them into val/<wnid>/ class folders, "
            "e.g. with the usual valprep.sh)"
            if flat
            else ""
        )
        raise UserError(f"{val_dir} has no class folders; expected val/<wnid>/*.JPEG{hint}")
    unknown = [c for c in val_classes if c not in index]
    if unknown:
        raise UserError(
            f"{os.path.join(val_dir, unknown[0])} is not a class of {train_dir} "
            f"({len(unknown)} unknown val class folder(s)); val/ and train/ must use the same "
            f"class folder names"
        )
    return LoadedDataset(
        spec=spec,
        train=split(train_dir, classes),
        test=split(val_dir, val_classes),
        classes=classes,
    )


def read_image(path: str) -> torch.Tensor:
    """Decode an image file to uint8 [3, H, W] RGB; `UserError` naming the file if it cannot."""
    import torchvision.io

    try:
        img = torchvision.io.decode_image(path, mode=torchvision.io.ImageReadMode.RGB)
    except FileNotFoundError:
        raise UserError(
            f"cannot read image file {path} (it no longer exists); restore it or pass "
            f"--skip-bad-images"
        ) from None
    except (RuntimeError, ValueError, OSError):
        raise UserError(
            f"cannot read image file {path} (corrupt or not an image); remove it or pass "
            f"--skip-bad-images"
        ) from None
    if img.dtype != torch.uint8:  # e.g. 16-bit PNG
        from torchvision.transforms.v2.functional import to_dtype

        img = to_dtype(img, torch.uint8, scale=True)
    if img.ndim != 3 or img.shape[0] != 3:
        raise UserError(
            f"cannot read image file {path} (decoded to shape {list(img.shape)}, not RGB); "
            f"remove it or pass --skip-bad-images"
        )
    return img
