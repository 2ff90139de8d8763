"""Real datasets read from files in torchvision's on-disk layout, offline first.

Where the files are looked for — one rule, everywhere (CLI, notebooks, Python):

1. the ``data_dir`` argument (``--data-dir DIR`` in the CLI, ``DATA_DIR`` in a notebook), else
2. the environment variable ``SSL_TEACH_DATA``, else
3. ``~/.cache/ssl_teach/datasets`` (apart from the checkpoint cache, so that clearing the
   cache never deletes a download).

Inside that folder the layout is the one torchvision writes, so files it downloaded before are
found as they are::

    cifar-10-batches-py/    data_batch_1..5, test_batch, batches.meta   (CIFAR-10)
    cifar-100-python/       train, test, meta                           (CIFAR-100)
    stl10_binary/           train_X.bin, train_y.bin, test_X.bin, test_y.bin,
                            unlabeled_X.bin, class_names.txt            (STL-10)
    FashionMNIST/raw/       train-images-idx3-ubyte[.gz], ...           (Fashion-MNIST)
    MNIST/raw/              train-images-idx3-ubyte[.gz], ...           (MNIST)

For ``folder`` the folder *is* the dataset: class subfolders of images give labels; a flat
folder of images gives unlabeled images only (pretext training works, the probe needs labels).

The network is used only when ``download=True`` (``--download``, or ``DOWNLOAD = True`` in a
notebook): torchvision then fetches and checks the archives into the same layout. Files are
read here, not through torchvision's dataset classes, so that a subsample of STL-10's 2.7 GB
unlabeled split is read straight from disk (memory-mapped) instead of loading it whole.

What each dataset gives (``unlabeled`` for the pretext task; ``train``/``test`` for the probe):

=============  =========================  =====================  =================
name           unlabeled                  train (labelled)       test (labelled)
=============  =========================  =====================  =================
cifar10        train split, 50,000        train split, 50,000    test split, 10,000
cifar100       train split, 50,000        train split, 50,000    test split, 10,000
stl10          unlabeled split, 100,000   train split, 5,000     test split, 8,000
fashion-mnist  train split, 60,000        train split, 60,000    test split, 10,000
mnist          train split, 60,000        train split, 60,000    test split, 10,000
folder         every image                the others             a fifth at most
=============  =========================  =====================  =================

Every part is subsampled to the requested count by a seeded permutation (None, or a count
larger than the part, keeps it whole) and resized to ``size`` x ``size`` with antialiasing.
Grayscale data stays one channel.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

DATA_ENV = "SSL_TEACH_DATA"
REAL_DATASETS = ("cifar10", "cifar100", "stl10", "fashion-mnist", "mnist", "folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
FORMAT_VERSION = 1  # bump when reading or resizing changes the images (part of the spec)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                 "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))

_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
            "stl10": "stl10_binary", "fashion-mnist": "FashionMNIST/raw", "mnist": "MNIST/raw"}
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DOWNLOAD_SIZE = {"cifar10": "170 MB", "cifar100": "170 MB", "stl10": "2.6 GB",
                  "fashion-mnist": "30 MB", "mnist": "12 MB"}


class MissingDataError(ValueError):
    """The files of a dataset are not where they were looked for."""


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$SSL_TEACH_DATA``, else
    ``~/.cache/ssl_teach/datasets``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ssl_teach" / "datasets"


def expected_files(name: str) -> list[str]:
    """The files (relative to the data folder) that dataset ``name`` is read from."""
    folder = _FOLDERS[name]
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    elif name == "cifar100":
        files = ["train", "test", "meta"]
    elif name == "stl10":
        files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"]
    else:
        files = [f for pair in _IDX.values() for f in pair]
    return [f"{folder}/{f}" for f in files]


def _present(root: Path, rel: str) -> Path | None:
    """The file itself, or its ``.gz`` version for IDX files; None when neither exists."""
    for candidate in (root / rel, root / (rel + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing(name: str, root: Path) -> list[str]:
    gz_ok = name in ("mnist", "fashion-mnist")
    return [rel for rel in expected_files(name)
            if not ((root / rel).is_file() or (gz_ok and (root / (rel + ".gz")).is_file()))]


def _missing_message(name: str, root: Path, missing: list[str]) -> str:
    return (
        f"dataset {name!r}: files not found in the data folder {root}\n"
        f"  looked for: {', '.join(expected_files(name))}\n"
        f"  missing: {', '.join(missing)}\n"
        "Fix it in one of two ways:\n"
        f"  1. put the files there, in torchvision's layout ({_FOLDERS[name]}/ inside {root}),"
        " or point to the folder that holds them: --data-dir DIR on the command line, "
        f"DATA_DIR = '...' in the notebook's first cell, or ${DATA_ENV} in the environment;\n"
        f"  2. allow the download ({_DOWNLOAD_SIZE[name]}, needs internet): --download on the "
        "command line, or DOWNLOAD = True in the notebook's first cell.")


def _download(name: str, root: Path) -> None:
    """Fetch the archives with torchvision (which checks their checksums) into ``root``."""
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        tvd.CIFAR10(str(root), train=True, download=True)
    elif name == "cifar100":
        tvd.CIFAR100(str(root), train=True, download=True)
    elif name == "stl10":
        tvd.STL10(str(root), split="train", download=True)
    elif name == "fashion-mnist":
        tvd.FashionMNIST(str(root), train=True, download=True)
    elif name == "mnist":
        tvd.MNIST(str(root), train=True, download=True)


# --- readers of the on-disk formats ---------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings only: a CIFAR file cannot run code."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}  # how Python 3 pickles bytes with protocol 2

    def find_class(self, module, name):
        module = module.replace("numpy.core", "numpy._core")  # files written by numpy < 2
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="latin1").load()


def _read_cifar(root: Path, name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR python batches -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    folder = root / _FOLDERS[name]
    if name == "cifar10":
        files = ([f"data_batch_{i}" for i in range(1, 6)] if part == "train"
                 else ["test_batch"])
        key = "labels"
    else:
        files, key = [part], "fine_labels"
    data, labels = [], []
    for file in files:
        batch = _unpickle(folder / file)
        data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[key], dtype=np.int64))
    return np.concatenate(data), np.concatenate(labels)


def _cifar_classes(root: Path, name: str) -> tuple[str, ...]:
    meta_file, key = (("batches.meta", "label_names") if name == "cifar10"
                      else ("meta", "fine_label_names"))
    return tuple(str(c) for c in _unpickle(root / _FOLDERS[name] / meta_file)[key])


def _stl_images(path: Path) -> np.ndarray:
    """An STL-10 image file as a memory map (N, 3, 96, 96); each image is stored column-major,
    so the last two axes are swapped back (a view: nothing is read yet)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if raw.size % (3 * 96 * 96):
        raise ValueError(f"{path} is not an STL-10 image file: {raw.size} bytes is not a "
                         "multiple of 3*96*96")
    return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def _stl_labels(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1  # stored as 1..10


def _stl_classes(root: Path) -> tuple[str, ...]:
    path = root / _FOLDERS["stl10"] / "class_names.txt"
    if path.is_file():
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if len(names) == 10:
            return names
    return STL10_CLASSES


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as an array of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes "
                         f"(header {data[:4].hex()})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_mnist(root: Path, name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(Fashion-)MNIST IDX files -> images (N, 1, 28, 28) uint8, labels (N,) int64."""
    image_file, label_file = _IDX[part]
    folder = _FOLDERS[name]
    images = _read_idx(_present(root, f"{folder}/{image_file}"))
    labels = _read_idx(_present(root, f"{folder}/{label_file}")).astype(np.int64)
    return images[:, None], labels


# --- subsampling and resizing ---------------------------------------------------------------


def subset_indices(total: int, n: int | None, *, seed: int) -> torch.Tensor:
    """``n`` of ``range(total)`` chosen by a seeded permutation, in increasing order (None or
    n >= total: all of them)."""
    if n is None or n >= total:
        return torch.arange(total)
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return perm[:n].sort().values


def resize(images: torch.Tensor, size: int | None, *, chunk: int = 1024) -> torch.Tensor:
    """Square uint8 images (N, C, H, H) -> (N, C, size, size), bilinear with antialiasing
    (so downsizing averages instead of aliasing); None or the same size returns them as is."""
    if size is None or images.shape[-1] == images.shape[-2] == size:
        return images
    out = torch.empty(*images.shape[:2], size, size, dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].float()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            antialias=True, align_corners=False)
        out[i:i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _take(images, labels, idx: torch.Tensor, size: int | None, *, chunk: int = 4096):
    """Rows ``idx`` of (numpy or memory-mapped) images and labels, resized, as tensors; read
    a chunk at a time, so a memory-mapped file is never in memory whole at its full size."""
    side = size or images.shape[-1]
    out = torch.empty(len(idx), images.shape[1], side, side, dtype=torch.uint8)
    for i in range(0, len(idx), chunk):
        rows = np.ascontiguousarray(images[idx[i:i + chunk].numpy()])
        out[i:i + len(rows)] = resize(torch.from_numpy(rows), size)
    return out, (None if labels is None else torch.from_numpy(labels[idx.numpy()]))


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the tensors' bytes: the identity of the data, wherever it lives."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


# --- the datasets ---------------------------------------------------------------------------


def load_real(name: str, *, size: int | None, n_unlabeled: int | None, n_train: int | None,
              n_test: int | None, seed: int, data_dir=None, download: bool = False) -> dict:
    """The parts of real dataset ``name`` as a dict of tensors plus ``class_names`` and
    ``spec`` (see the module docstring for what each part holds)."""
    if name == "folder":
        return load_folder(data_dir, size=size, n_unlabeled=n_unlabeled, n_train=n_train,
                           n_test=n_test, seed=seed)
    root = data_root(data_dir)
    missing = _missing(name, root)
    if missing and download:
        _download(name, root)
        missing = _missing(name, root)
    if missing:
        raise MissingDataError(_missing_message(name, root, missing))

    if name in ("cifar10", "cifar100"):
        train_x, train_y = _read_cifar(root, name, "train")
        test_x, test_y = _read_cifar(root, name, "test")
        pool, classes = train_x, _cifar_classes(root, name)
    elif name == "stl10":
        folder = root / _FOLDERS["stl10"]
        train_x, train_y = _stl_images(folder / "train_X.bin"), _stl_labels(folder / "train_y.bin")
        test_x, test_y = _stl_images(folder / "test_X.bin"), _stl_labels(folder / "test_y.bin")
        pool, classes = _stl_images(folder / "unlabeled_X.bin"), _stl_classes(root)
    else:
        train_x, train_y = _read_mnist(root, name, "train")
        test_x, test_y = _read_mnist(root, name, "test")
        pool = train_x
        classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES

    unlabeled, _ = _take(pool, None, subset_indices(len(pool), n_unlabeled, seed=seed * 7919),
                         size)
    train_images, train_labels = _take(
        train_x, train_y, subset_indices(len(train_x), n_train, seed=seed * 7919 + 1), size)
    test_images, test_labels = _take(
        test_x, test_y, subset_indices(len(test_x), n_test, seed=seed * 7919 + 2), size)
    return _parts(name, unlabeled, train_images, train_labels, test_images, test_labels, classes,
                  size=size, counts=(n_unlabeled, n_train, n_test), seed=seed)


def _parts(name, unlabeled, train_images, train_labels, test_images, test_labels, classes, *,
           size, counts, seed) -> dict:
    n_unlabeled, n_train, n_test = counts
    spec = {"name": name, "size": size, "n_unlabeled": n_unlabeled, "n_train": n_train,
            "n_test": n_test, "seed": seed, "format": FORMAT_VERSION,
            "shape": list(unlabeled.shape[1:]),
            "fingerprint": fingerprint(unlabeled, train_images, train_labels, test_images,
                                       test_labels)}
    return {"unlabeled": unlabeled, "train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels,
            "class_names": tuple(classes), "spec": spec}


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, in sorted order, skipping hidden files and folders
    (such as ``.ipynb_checkpoints``)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _is_gray(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as img:  # reads the header only
        return img.mode in ("1", "L", "LA", "I", "I;16", "F")


def _load_images(paths: list[Path], size: int, mode: str) -> torch.Tensor:
    """Decode, crop to the centred square and resize (antialiased) each image file."""
    from PIL import Image, ImageOps

    channels = 1 if mode == "L" else 3
    out = torch.empty(len(paths), channels, size, size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            img = ImageOps.fit(img.convert(mode), (size, size),
                               method=Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
        out[i] = torch.from_numpy(array.copy()).permute(2, 0, 1)
    return out


def load_folder(data_dir, *, size: int | None, n_unlabeled: int | None, n_train: int | None,
                n_test: int | None, seed: int) -> dict:
    """A folder of images: class subfolders give labelled splits (a fifth of the images at most
    for the test split, the others for training); a flat folder gives unlabeled images only."""
    root = data_root(data_dir)
    if not root.is_dir():
        raise MissingDataError(
            f"dataset 'folder': the folder {root} does not exist; point to a folder of images "
            f"(class subfolders for labels) with --data-dir DIR, DATA_DIR = '...' in the "
            f"notebook's first cell, or ${DATA_ENV}")
    if size is None:
        raise ValueError("dataset 'folder' needs an image size (size=...), because its images "
                         "may all differ in size")
    classes = sorted(d.name for d in root.iterdir()
                     if d.is_dir() and not d.name.startswith(".") and _image_files(d))
    if classes:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            warnings.warn(f"{len(loose)} image(s) directly in {root} are ignored: with class "
                          "subfolders, every image must be in one of them", stacklevel=3)
        files, labels = [], []
        for label, cls in enumerate(classes):
            found = _image_files(root / cls)
            files += found
            labels += [label] * len(found)
    else:
        files = [p for p in sorted(root.iterdir()) if p.is_file()
                 and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        labels = []
    if not files:
        raise MissingDataError(
            f"dataset 'folder': no images ({', '.join(IMAGE_SUFFIXES)}) in {root}; put images "
            "there (in class subfolders for the probe), or point --data-dir / DATA_DIR / "
            f"${DATA_ENV} to another folder")
    mode = "L" if all(_is_gray(p) for p in files) else "RGB"
    pool = subset_indices(len(files), n_unlabeled, seed=seed * 7919)
    unlabeled = _load_images([files[i] for i in pool], size, mode)
    empty = torch.empty(0, unlabeled.shape[1], size, size, dtype=torch.uint8)
    no_labels = torch.empty(0, dtype=torch.int64)
    if not classes:
        parts = (empty, no_labels, empty, no_labels)
    else:
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed * 7919 + 1))
        n_te = min(len(files) // 5, n_test if n_test is not None else len(files))
        test_idx = order[:n_te].sort().values
        rest = order[n_te:]
        train_idx = rest[:n_train if n_train is not None else len(rest)].sort().values
        y = torch.tensor(labels, dtype=torch.int64)
        parts = (_load_images([files[i] for i in train_idx], size, mode), y[train_idx],
                 _load_images([files[i] for i in test_idx], size, mode), y[test_idx])
    result = _parts("folder", unlabeled, *parts, classes, size=size,
                    counts=(n_unlabeled, n_train, n_test), seed=seed)
    return result
