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
folder         all but the test images    the others             a fifth at most
=============  =========================  =====================  =================

Every part is subsampled to the requested count by a seeded permutation (None, or a count
larger than the part, keeps it whole) and resized to ``size`` x ``size`` with antialiasing
(with a warning when that enlarges images more than twice). Grayscale data stays one channel;
16-bit grayscale images are scaled to 8 bits.

A file or folder that cannot be used raises one :class:`DataError` that names it, says what is
wrong and how to fix it (a folder of images names every unreadable image in one message): a
truncated or garbage file, counts of images and labels that differ, labels outside the
classes, an unreadable file or folder, a folder with one class.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

DATA_ENV = "SSL_TEACH_DATA"
REAL_DATASETS = ("cifar10", "cifar100", "stl10", "fashion-mnist", "mnist", "folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
FORMAT_VERSION = 2  # bump when reading or resizing changes the images (part of the spec)

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


ENLARGE_WARNING = 2.0
"""Resizing that enlarges images more than this factor warns: the images will look blurred."""


class DataError(ValueError):
    """A data file or folder that cannot be used: the message names it, says what is wrong
    and how to fix it, on one line."""

    def __init__(self, path, problem: str, fix: str):
        problem = " ".join(problem.split())  # one line, even where it quotes another error
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}; to fix it, {fix}")


class MissingDataError(DataError):
    """The files of a dataset are not where they were looked for."""

    def __init__(self, message: str, path=None):
        ValueError.__init__(self, message)
        self.path, self.problem, self.fix = path, message, ""


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


def _refetch(path: Path) -> str:
    """How to replace a damaged file of a downloaded dataset."""
    return (f"delete {path.parent} and fetch the dataset again (--download on the command "
            "line, DOWNLOAD = True in the notebook), or copy an intact copy of the file there")


def _os_error(path: Path, err: OSError) -> DataError:
    """The data error of a file that the operating system will not let us read."""
    if isinstance(err, PermissionError):
        return DataError(path, "cannot be read (permission denied)",
                         "make it readable (chmod a+r), or copy the data to a folder of your "
                         "own and point --data-dir / DATA_DIR there")
    if isinstance(err, IsADirectoryError):
        return DataError(path, "is a folder where a file is expected",
                         "remove or rename that folder and put the dataset's file there")
    return DataError(path, f"cannot be read ({err.strerror or err})", _refetch(path))


def _read_bytes(path: Path) -> bytes:
    """The bytes of a data file (gunzipped when it ends in .gz), or a :class:`DataError`."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(path, f"is a truncated or damaged gzip file ({err})",
                        _refetch(path)) from None
    except OSError as err:
        raise _os_error(path, err) from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings only: a CIFAR file cannot run code."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}  # how Python 3 pickles bytes with protocol 2

    def find_class(self, module, name):
        module = module.replace("numpy.core", "numpy._core")  # files written by numpy < 2
        if (module, name) not in self._ALLOWED:
            raise _Refused(f"it holds {module}.{name}, which a data file never does; "
                           "refusing to load it")
        return super().find_class(module, name)


class _Refused(pickle.UnpicklingError):
    """A pickle that asks for something other than arrays, lists, dicts and strings."""


def _unpickle(path: Path) -> dict:
    """A CIFAR python file as a dict, or a :class:`DataError` naming the file."""
    data = _read_bytes(path)
    if not data:
        raise DataError(path, "is empty (0 bytes)", _refetch(path))
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as err:
        raise DataError(path, f"is not a CIFAR file: {err}",
                        "replace it with the original file from the dataset") from None
    except Exception as err:  # a truncated or garbage pickle fails in many different ways
        raise DataError(path, f"is truncated or not a CIFAR file ({type(err).__name__}: "
                        f"{err})", _refetch(path)) from None
    if not isinstance(batch, dict):
        raise DataError(path, f"is not a CIFAR file (it holds a {type(batch).__name__}, "
                        "not a dict)", _refetch(path))
    return batch


def _check_labels(path: Path, labels: np.ndarray, num_classes: int, *, n_images: int,
                  images_file: Path | None = None, first: int = 0) -> None:
    """Labels must be one per image and lie in ``first``..``first + num_classes - 1``."""
    if len(labels) != n_images:
        where = f" ({images_file.name} holds {n_images} images)" if images_file else ""
        raise DataError(path, f"holds {len(labels)} labels for {n_images} images{where}",
                        _refetch(path))
    bad = (labels < first) | (labels >= first + num_classes)
    if bad.any():
        values = sorted({int(v) for v in labels[bad]})
        raise DataError(path, f"{int(bad.sum())} labels lie outside {first}.."
                        f"{first + num_classes - 1} (the {num_classes} classes): "
                        f"{', '.join(map(str, values[:5]))}{' ...' if len(values) > 5 else ''}",
                        _refetch(path))


def _read_cifar(root: Path, name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR python batches -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    folder = root / _FOLDERS[name]
    if name == "cifar10":
        files = ([f"data_batch_{i}" for i in range(1, 6)] if part == "train"
                 else ["test_batch"])
        key, num_classes = "labels", 10
    else:
        files, key, num_classes = [part], "fine_labels", 100
    data, labels = [], []
    for file in files:
        path = folder / file
        batch = _unpickle(path)
        if "data" not in batch or key not in batch:
            raise DataError(path, f"is not a CIFAR batch (it has no 'data' or {key!r} entry)",
                            _refetch(path))
        try:
            x = np.asarray(batch["data"], dtype=np.uint8)
            y = np.asarray(batch[key], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise DataError(path, f"is not a CIFAR batch ({err})", _refetch(path)) from None
        if x.size % 3072:
            raise DataError(path, f"holds {x.size} bytes of images, not a whole number of "
                            "32x32 colour images (3072 bytes each)", _refetch(path))
        x = x.reshape(-1, 3, 32, 32)
        _check_labels(path, y, num_classes, n_images=len(x))
        data.append(x)
        labels.append(y)
    return np.concatenate(data), np.concatenate(labels)


def _cifar_classes(root: Path, name: str) -> tuple[str, ...]:
    meta_file, key, count = (("batches.meta", "label_names", 10) if name == "cifar10"
                             else ("meta", "fine_label_names", 100))
    path = root / _FOLDERS[name] / meta_file
    names = _unpickle(path).get(key)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise DataError(path, f"does not hold the {count} class names under {key!r}",
                        _refetch(path))
    return tuple(str(c) for c in names)


def _stl_images(path: Path) -> np.ndarray:
    """An STL-10 image file as a memory map (N, 3, 96, 96); each image is stored column-major,
    so the last two axes are swapped back (a view: nothing is read yet)."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise DataError(path, "is empty (0 bytes)", _refetch(path))
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as err:
        raise _os_error(path, err) from None
    if raw.size % (3 * 96 * 96):
        raise DataError(path, f"is not an STL-10 image file: {raw.size} bytes is not a "
                        "multiple of 3*96*96 (truncated?)", _refetch(path))
    return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def _stl_labels(path: Path, images: np.ndarray, images_file: Path) -> np.ndarray:
    """STL-10 labels (stored as 1..10) as 0..9, checked against the images."""
    labels = np.frombuffer(_read_bytes(path), dtype=np.uint8).astype(np.int64)
    _check_labels(path, labels, 10, n_images=len(images), images_file=images_file, first=1)
    return labels - 1


def _stl_classes(root: Path) -> tuple[str, ...]:
    path = root / _FOLDERS["stl10"] / "class_names.txt"
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return STL10_CLASSES  # the names are a nicety; the standard ones are the same
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
        if len(names) == 10:
            return names
    return STL10_CLASSES


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as an array of unsigned bytes."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(path, f"is {'empty' if not data else 'too short'} ({len(data)} "
                        "bytes): not an IDX file", _refetch(path))
    zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise DataError(path, f"is not an IDX file of unsigned bytes (header "
                        f"{data[:4].hex()})", _refetch(path))
    if len(data) < 4 + 4 * ndim:
        raise DataError(path, "is truncated inside its header", _refetch(path))
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected, held = int(np.prod(shape)), len(data) - 4 - 4 * ndim
    if held != expected:
        raise DataError(path, f"holds {held} bytes of data where its header {shape} says "
                        f"{expected} ({'truncated' if held < expected else 'extra bytes'})",
                        _refetch(path))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_mnist(root: Path, name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(Fashion-)MNIST IDX files -> images (N, 1, 28, 28) uint8, labels (N,) int64."""
    image_file, label_file = _IDX[part]
    folder = _FOLDERS[name]
    image_path = _present(root, f"{folder}/{image_file}")
    label_path = _present(root, f"{folder}/{label_file}")
    images = _read_idx(image_path)
    labels = _read_idx(label_path).astype(np.int64)
    if images.ndim != 3:
        raise DataError(image_path, f"holds an array of shape {images.shape}, not images "
                        "(N, height, width)", _refetch(image_path))
    if labels.ndim != 1:
        raise DataError(label_path, f"holds an array of shape {labels.shape}, not one label "
                        "per image", _refetch(label_path))
    _check_labels(label_path, labels, 10, n_images=len(images), images_file=image_path)
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
    """A short hash of the tensors' values: the identity of the data, wherever it lives."""
    from ..cache import fingerprint as values_fingerprint

    return values_fingerprint(*tensors)


# --- the datasets ---------------------------------------------------------------------------


def _warn_enlarged(where, smallest: int, size: int | None, count: int, total: int) -> None:
    """Warn when resizing to ``size`` enlarges ``count`` of ``total`` images (the smallest of
    side ``smallest``) more than :data:`ENLARGE_WARNING` times."""
    if size is None or not count or size <= ENLARGE_WARNING * smallest:
        return
    warnings.warn(
        f"{where}: {count} of {total} images are enlarged more than {ENLARGE_WARNING:g}x to "
        f"{size}x{size} (the smallest is {smallest} px, enlarged {size / smallest:.1f}x), so "
        "they will look blurred; use larger images, or a smaller image size (a profile with "
        "a smaller image_size, or load_dataset(..., size=...))", stacklevel=4)


def _check_root(root: Path, name: str) -> None:
    """A data folder that exists must be a folder we may list, and each expected file a file."""
    if root.exists() and not root.is_dir():
        raise DataError(root, "is a file, not the data folder",
                        "point --data-dir / DATA_DIR / $" + DATA_ENV + " to the folder that "
                        f"holds {_FOLDERS[name]}/")
    folder = root / _FOLDERS[name]
    for path in (root, folder):
        if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
            raise DataError(path, "cannot be read (permission denied)",
                            "make it readable (chmod -R a+rX), or copy the data to a folder "
                            "of your own and point --data-dir / DATA_DIR there")
    for rel in expected_files(name):
        if (root / rel).is_dir():
            raise _os_error(root / rel, IsADirectoryError(rel))


def load_real(name: str, *, size: int | None, n_unlabeled: int | None, n_train: int | None,
              n_test: int | None, seed: int, data_dir=None, download: bool = False) -> dict:
    """The parts of real dataset ``name`` as a dict of tensors plus ``class_names`` and
    ``spec`` (see the module docstring for what each part holds)."""
    if name == "folder":
        return load_folder(data_dir, size=size, n_unlabeled=n_unlabeled, n_train=n_train,
                           n_test=n_test, seed=seed)
    root = data_root(data_dir)
    _check_root(root, name)
    missing = _missing(name, root)
    if missing and download:
        _download(name, root)
        missing = _missing(name, root)
    if missing:
        raise MissingDataError(_missing_message(name, root, missing), path=root)

    if name in ("cifar10", "cifar100"):
        train_x, train_y = _read_cifar(root, name, "train")
        test_x, test_y = _read_cifar(root, name, "test")
        pool, classes = train_x, _cifar_classes(root, name)
    elif name == "stl10":
        folder = root / _FOLDERS["stl10"]
        train_x = _stl_images(folder / "train_X.bin")
        train_y = _stl_labels(folder / "train_y.bin", train_x, folder / "train_X.bin")
        test_x = _stl_images(folder / "test_X.bin")
        test_y = _stl_labels(folder / "test_y.bin", test_x, folder / "test_X.bin")
        pool, classes = _stl_images(folder / "unlabeled_X.bin"), _stl_classes(root)
    else:
        train_x, train_y = _read_mnist(root, name, "train")
        test_x, test_y = _read_mnist(root, name, "test")
        pool = train_x
        classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    native = pool.shape[-1]
    _warn_enlarged(f"dataset {name!r}", native, size, len(pool), len(pool))

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


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _image_files(folder: Path, errors: list[str]) -> list[Path]:
    """Image files under ``folder``, in sorted order, skipping hidden files and folders (such
    as ``.ipynb_checkpoints``). A folder that cannot be listed is added to ``errors`` instead
    of being skipped without a word."""

    def failed(err: OSError) -> None:
        errors.append(f"{err.filename} ({err.strerror or err})")

    found = []
    for here, folders, files in os.walk(folder, onerror=failed):
        folders[:] = [f for f in folders if not f.startswith(".")]
        found += [Path(here) / f for f in files if _is_image_name(f)]
    return sorted(found)


def _list_folder(root: Path) -> list[os.DirEntry]:
    """The entries of the dataset folder, or a :class:`DataError` when it cannot be listed."""
    try:
        with os.scandir(root) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as err:
        raise _os_error(root, err) from None


def _folder_fix(root: Path) -> str:
    return (f"make them readable (chmod a+r FILE, chmod -R a+rX FOLDER), or replace or remove "
            f"them from {root}")


def _unreadable(root: Path, problems: list[str], what: str) -> DataError:
    """One error that names every unreadable image (or folder) of the dataset folder."""
    return DataError(root, f"{len(problems)} {what} cannot be read: " + "; ".join(problems),
                     _folder_fix(root))


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _scan(paths: list[Path], root: Path) -> tuple[list[str], list[tuple[int, int]]]:
    """Open each image's header: its mode and size. When some fail, every other image is
    decoded too, so that one error names all the unreadable ones."""
    from PIL import Image

    modes, sizes, problems = [], [], []
    for path in paths:
        try:
            with Image.open(path) as img:  # reads the header only
                modes.append(img.mode)
                sizes.append(img.size)
        except Exception as err:  # PIL raises many kinds for files that are not images
            problems.append((path, _reason(err)))
            modes.append(None)
            sizes.append((0, 0))
    if problems:
        for path, mode in zip(paths, modes):
            if mode is not None:
                try:
                    with Image.open(path) as img:
                        img.load()
                except Exception as err:  # truncated or damaged image data
                    problems.append((path, _reason(err)))
        problems.sort()
        raise _unreadable(root, [f"{p.relative_to(root)} ({why})" for p, why in problems],
                          "image(s)")
    return modes, sizes


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_8bit(img):
    """``img`` with 8 bits per channel: 16- and 32-bit integer grayscale are scaled from their
    full range (converting them directly would clip everything above 255 to white), float
    images from [0, 1]."""
    from PIL import Image

    if img.mode.startswith("I"):
        x = np.asarray(img, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F":
        x = np.asarray(img, dtype=np.float64)
        x = x * 255.0 if x.size and x.max() <= 1.0 else x
    else:
        return img
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def _load_images(paths: list[Path], size: int, mode: str, root: Path) -> torch.Tensor:
    """Decode, crop to the centred square and resize (antialiased) each image file; every
    file that fails is named in one :class:`DataError`."""
    from PIL import Image, ImageOps

    channels = 1 if mode == "L" else 3
    out = torch.empty(len(paths), channels, size, size, dtype=torch.uint8)
    problems = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = ImageOps.fit(_to_8bit(img).convert(mode), (size, size),
                                   method=Image.Resampling.BICUBIC)
                array = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
        except Exception as err:  # truncated or damaged image data, found while decoding
            problems.append(f"{path.relative_to(root)} ({_reason(err)})")
            continue
        out[i] = torch.from_numpy(array.copy()).permute(2, 0, 1)
    if problems:
        raise _unreadable(root, problems, "image(s)")
    return out


def load_folder(data_dir, *, size: int | None, n_unlabeled: int | None, n_train: int | None,
                n_test: int | None, seed: int) -> dict:
    """A folder of images: class subfolders (at least two) give labelled splits (a fifth of the
    images at most for the test split, the others for training; the unlabeled images for the
    pretext task never include the test images); a flat folder gives unlabeled images only."""
    root = data_root(data_dir)
    if not root.is_dir():
        raise MissingDataError(
            f"dataset 'folder': the folder {root} "
            f"{'is a file' if root.exists() else 'does not exist'}; point to a folder of "
            f"images (class subfolders for labels) with --data-dir DIR, DATA_DIR = '...' in "
            f"the notebook's first cell, or ${DATA_ENV}", path=root)
    if size is None:
        raise ValueError("dataset 'folder' needs an image size (size=...), because its images "
                         "may all differ in size")
    entries = _list_folder(root)
    walk_errors: list[str] = []
    found = {}
    for entry in entries:
        if not entry.name.startswith(".") and entry.is_dir():
            found[entry.name] = _image_files(Path(entry.path), walk_errors)
    if walk_errors:
        raise _unreadable(root, walk_errors, "folder(s)")
    classes = sorted(name for name, files in found.items() if files)
    empty = sorted(name for name, files in found.items() if not files)
    if classes and empty:
        warnings.warn(f"{root}: subfolder(s) {', '.join(empty)} hold no images and are not "
                      "classes", stacklevel=3)
    if len(classes) == 1:
        raise DataError(root, f"has a single class subfolder ({classes[0]!r}); a probe over "
                        "one class is always right, so its numbers would mean nothing",
                        "add a subfolder for every other class (at least two), or put the "
                        "images directly in the folder to use them for pretext training only")
    if classes:
        loose = [e for e in entries if e.is_file() and _is_image_name(e.name)]
        if loose:
            warnings.warn(f"{len(loose)} image(s) directly in {root} are ignored: with class "
                          "subfolders, every image must be in one of them", stacklevel=3)
        files, labels = [], []
        for label, cls in enumerate(classes):
            files += found[cls]
            labels += [label] * len(found[cls])
    else:
        files = [Path(e.path) for e in entries if _is_image_name(e.name)
                 and not e.is_dir()]
        labels = []
    if not files:
        raise MissingDataError(
            f"dataset 'folder': no images ({', '.join(IMAGE_SUFFIXES)}) in {root}; put images "
            "there (in class subfolders for the probe), or point --data-dir / DATA_DIR / "
            f"${DATA_ENV} to another folder", path=root)
    modes, sizes = _scan(files, root)
    mode = "L" if all(m in GRAY_MODES for m in modes) else "RGB"
    sides = [min(s) for s in sizes]
    _warn_enlarged(root, min(sides), size, sum(size > ENLARGE_WARNING * s for s in sides),
                   len(files))

    n = len(files)
    if classes:
        # the test split first: the unlabeled images for the pretext task come from the rest
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + 1))
        n_te = min(n // 5, n_test if n_test is not None else n)
        test_idx = order[:n_te].sort().values
        rest = order[n_te:]
        train_idx = rest[:n_train if n_train is not None else len(rest)].sort().values
        candidates = rest.sort().values
    else:
        test_idx = train_idx = torch.zeros(0, dtype=torch.int64)
        candidates = torch.arange(n)
    pool_idx = candidates[subset_indices(len(candidates), n_unlabeled, seed=seed * 7919)]
    needed = torch.cat([pool_idx, train_idx, test_idx]).unique()  # each file decoded once
    decoded = _load_images([files[i] for i in needed], size, mode, root)
    row = torch.full((n,), -1, dtype=torch.int64)
    row[needed] = torch.arange(len(needed))
    y = torch.tensor(labels, dtype=torch.int64) if labels else torch.zeros(0, dtype=torch.int64)
    unlabeled = decoded[row[pool_idx]]
    parts = (decoded[row[train_idx]], y[train_idx] if classes else y,
             decoded[row[test_idx]], y[test_idx] if classes else y)
    return _parts("folder", unlabeled, *parts, classes, size=size,
                  counts=(n_unlabeled, n_train, n_test), seed=seed)


# --- STL-10's predefined training folds -----------------------------------------------------

STL10_FOLDS = 10
"""STL-10 defines 10 training folds of 1,000 of its 5,000 training images each."""


def read_stl10_folds(data_dir=None) -> list[torch.Tensor]:
    """STL-10's predefined training folds: ``stl10_binary/fold_indices.txt`` in the data
    folder, 10 lines of zero-based indices into the 5,000 training images (1,000 a line), as
    10 int64 tensors. The published STL-10 results (Exemplar-CNN's 74.2% among them) train
    on each fold and report the mean over the folds."""
    path = data_root(data_dir) / _FOLDERS["stl10"] / "fold_indices.txt"
    if not path.is_file():
        raise MissingDataError(
            f"dataset 'stl10': the fold file {path} is missing; it is part of STL-10's archive "
            "(stl10_binary/fold_indices.txt, written by torchvision's download too): put it "
            "there, point --data-dir / DATA_DIR / $SSL_TEACH_DATA to the folder that holds "
            "stl10_binary/, or allow the download with --download", path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        folds = [torch.tensor([int(x) for x in line], dtype=torch.int64) for line in lines]
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(path, f"is not STL-10's fold file ({err})",
                        "fetch stl10_binary/fold_indices.txt again (--download)") from None
    if len(folds) != STL10_FOLDS:
        raise DataError(path, f"has {len(folds)} folds, STL-10 defines {STL10_FOLDS} (one "
                        "line of training-image indices each)",
                        "fetch stl10_binary/fold_indices.txt again (--download)")
    for k, fold in enumerate(folds):
        if len(fold) == 0 or int(fold.min()) < 0 or len(fold.unique()) != len(fold):
            raise DataError(path, f"fold {k + 1} is empty, negative or repeats an index",
                            "fetch stl10_binary/fold_indices.txt again (--download)")
    return folds
