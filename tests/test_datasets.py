"""Real datasets: each on-disk format, read from tiny files fabricated in the real layout."""

import gzip
import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_teach.data import DATASETS, DataError, MissingDataError, data_root, load_dataset
from ssl_teach.data.real import expected_files, resize, subset_indices


def _images(n, channels, side, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, channels, side, side), np.uint8)


def write_cifar(root, *, name="cifar10", n_train=(6, 5, 4, 5, 5), n_test=7, seed=0):
    """CIFAR python batches (pickled dicts, rows of 3072 bytes: R plane, G plane, B plane)."""
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    key, k = ("labels", 10) if name == "cifar10" else ("fine_labels", 100)
    rng = np.random.default_rng(seed)
    truth = {}

    def dump(file, n):
        x = _images(n, 3, 32, rng.integers(1 << 30))
        y = rng.integers(0, k, n).tolist()
        batch = {"batch_label": file, key: y, "data": x.reshape(n, 3072),
                 "filenames": [f"{file}_{i}.png" for i in range(n)]}
        (folder / file).write_bytes(pickle.dumps(batch, protocol=2))
        truth[file] = (x, np.array(y))

    if name == "cifar10":
        for i, n in enumerate(n_train, 1):
            dump(f"data_batch_{i}", n)
        dump("test_batch", n_test)
        names = {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    else:
        dump("train", sum(n_train))
        dump("test", n_test)
        meta = {"fine_label_names": [f"f{i}" for i in range(100)],
                "coarse_label_names": [f"g{i}" for i in range(20)]}
        (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return truth


def write_stl10(root, *, n_train=5, n_test=4, n_unlabeled=9, seed=0):
    """STL-10 binaries: uint8 images, each channel stored column-major; labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    truth = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = _images(n, 3, 96, seed + n)
        # column-major: the file holds x[i, c].T for every image and channel
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(
            x.transpose(0, 1, 3, 2)).tobytes())
        truth[split] = x
        if split != "unlabeled":
            y = np.arange(n) % 10 + 1
            (folder / f"{split}_y.bin").write_bytes(y.astype(np.uint8).tobytes())
            truth[split + "_y"] = y - 1
    (folder / "class_names.txt").write_text("\n".join(f"s{i}" for i in range(10)) + "\n")
    return truth


def _idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(root, *, name="fashion-mnist", n_train=12, n_test=6, gz=True, seed=0):
    """(Fashion-)MNIST IDX files, gzipped as the download leaves them (or extracted)."""
    folder = root / ("FashionMNIST" if name == "fashion-mnist" else "MNIST") / "raw"
    folder.mkdir(parents=True)
    truth = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = _images(n, 1, 28, seed + n)[:, 0]
        y = np.arange(n) % 10
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            data = _idx_bytes(arr)
            path = folder / f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.open(str(path) + ".gz", "wb") as f:
                    f.write(data)
            else:
                path.write_bytes(data)
        truth[prefix] = (x, y)
    return truth


def write_folder(root, *, classes=("cat", "dog"), per_class=10, gray=False, sizes=(40, 50)):
    """PNG files, in class subfolders (or flat when ``classes`` is empty), of varied sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    folders = [root / c for c in classes] or [root]
    for f in folders:
        f.mkdir(exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)], sizes[(i + 1) % len(sizes)]
            shape = (h, w) if gray else (h, w, 3)
            Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(f / f"img{i}.png")
    return root


SMALL = {"n_unlabeled": None, "n_train": None, "n_test": None, "seed": 0}


def test_every_real_dataset_is_named():
    assert set(DATASETS) == {"scenes", "cifar10", "cifar100", "stl10", "fashion-mnist", "mnist",
                             "folder"}


def test_cifar10_pickles_are_read_exactly(tmp_path):
    truth = write_cifar(tmp_path)
    d = load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)
    train_x = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = np.concatenate([truth[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert torch.equal(d.unlabeled, torch.from_numpy(train_x))
    assert torch.equal(d.train_images, torch.from_numpy(train_x))
    assert torch.equal(d.train_labels, torch.from_numpy(train_y))
    assert torch.equal(d.test_images, torch.from_numpy(truth["test_batch"][0]))
    assert d.class_names == tuple(f"c{i}" for i in range(10))
    assert d.unlabeled.dtype == torch.uint8 and d.channels == 3 and d.labelled


def test_cifar100_uses_the_fine_labels(tmp_path):
    truth = write_cifar(tmp_path, name="cifar100")
    d = load_dataset("cifar100", size=32, data_dir=tmp_path, **SMALL)
    assert torch.equal(d.test_labels, torch.from_numpy(truth["test"][1]))
    assert d.num_classes == 100 and d.class_names[7] == "f7"


def test_stl10_binaries_are_column_major_and_labels_start_at_one(tmp_path):
    truth = write_stl10(tmp_path)
    d = load_dataset("stl10", size=96, data_dir=tmp_path, **SMALL)
    assert torch.equal(d.unlabeled, torch.from_numpy(truth["unlabeled"]))  # pretext: unlabeled
    assert torch.equal(d.train_images, torch.from_numpy(truth["train"]))
    assert torch.equal(d.test_labels, torch.from_numpy(truth["test_y"]))
    assert d.train_labels.min() == 0 and d.class_names[0] == "s0"


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gzipped_or_not(tmp_path, gz):
    truth = write_idx(tmp_path, gz=gz)
    d = load_dataset("fashion-mnist", size=28, data_dir=tmp_path, **SMALL)
    assert d.channels == 1  # grayscale stays one channel
    assert torch.equal(d.train_images[:, 0], torch.from_numpy(truth["train"][0]))
    assert torch.equal(d.test_labels, torch.from_numpy(truth["t10k"][1]))
    assert d.class_names[-1] == "Ankle boot"


def test_mnist_layout(tmp_path):
    write_idx(tmp_path, name="mnist")
    d = load_dataset("mnist", size=32, data_dir=tmp_path, **SMALL)
    assert d.unlabeled.shape == (12, 1, 32, 32) and d.class_names[3] == "3"


def test_counts_subsample_with_a_seeded_permutation(tmp_path):
    write_cifar(tmp_path)
    kw = {"size": 32, "data_dir": tmp_path, "n_unlabeled": 10, "n_train": 8, "n_test": 100}
    a = load_dataset("cifar10", seed=0, **kw)
    b = load_dataset("cifar10", seed=0, **kw)
    c = load_dataset("cifar10", seed=1, **kw)
    assert len(a.unlabeled) == 10 and len(a.train_images) == 8
    assert len(a.test_images) == 7  # asking for more than there are gives all
    assert torch.equal(a.unlabeled, b.unlabeled) and a.spec == b.spec
    assert not torch.equal(a.unlabeled, c.unlabeled) and a.spec != c.spec
    idx = subset_indices(25, 10, seed=0)
    assert len(set(idx.tolist())) == 10 and idx.tolist() == sorted(idx.tolist())


def test_images_are_resized_with_antialiasing(tmp_path):
    write_stl10(tmp_path)
    d = load_dataset("stl10", size=32, data_dir=tmp_path, **SMALL)
    assert d.unlabeled.shape == (9, 3, 32, 32) and d.image_size == 32
    # antialiased 3x downsizing of a checkerboard averages to grey; plain sampling would not
    board = ((torch.arange(96)[:, None] + torch.arange(96)) % 2 * 255).to(torch.uint8)
    small = resize(board.expand(1, 1, 96, 96), 32)
    assert (small.float() - 127.5).abs().max() < 45


def test_spec_identifies_the_data_but_not_where_it_lives(tmp_path):
    write_cifar(tmp_path / "a")
    write_cifar(tmp_path / "b")
    write_cifar(tmp_path / "c", seed=5)
    a, b, c = (load_dataset("cifar10", size=32, data_dir=tmp_path / s, **SMALL) for s in "abc")
    assert a.spec == b.spec and a.spec != c.spec
    assert str(tmp_path) not in json.dumps(a.spec)
    for key in ("name", "size", "n_unlabeled", "n_train", "n_test", "seed", "fingerprint"):
        assert key in a.spec
    other_size = load_dataset("cifar10", size=16, data_dir=tmp_path / "a", **SMALL)
    assert other_size.spec != a.spec


def test_data_dir_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_TEACH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    write_idx(tmp_path / "env", name="mnist")
    assert len(load_dataset("mnist", size=28, **SMALL).unlabeled) == 12
    monkeypatch.delenv("SSL_TEACH_DATA")
    assert data_root().parts[-2:] == ("ssl_teach", "datasets")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "fashion-mnist", "mnist"])
def test_missing_files_error_says_what_and_how_to_fix_it(tmp_path, name):
    with pytest.raises(MissingDataError) as info:
        load_dataset(name, size=32, data_dir=tmp_path, **SMALL)
    msg = str(info.value)
    assert repr(name) in msg and str(tmp_path) in msg
    assert expected_files(name)[0] in msg
    assert "--download" in msg and "DOWNLOAD = True" in msg and "--data-dir" in msg
    assert isinstance(info.value, ValueError)  # the CLI reports it as a plain error


def test_partial_files_are_reported_as_missing(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(MissingDataError, match="missing: cifar-10-batches-py/data_batch_3"):
        load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match="test_batch: .*builtins.print.*refusing"):
        load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)


def test_folder_with_class_subfolders_gives_labelled_splits(tmp_path):
    write_folder(tmp_path / "imgs", classes=("cat", "dog", "owl"), per_class=10)
    d = load_dataset("folder", size=24, data_dir=tmp_path / "imgs", **SMALL)
    assert d.class_names == ("cat", "dog", "owl") and d.channels == 3
    assert d.unlabeled.shape == (24, 3, 24, 24)  # every image but the test split's
    assert len(d.test_images) == 6 and len(d.train_images) == 24  # a fifth for testing
    assert sorted(torch.cat([d.train_labels, d.test_labels]).tolist()) == sorted(
        [0] * 10 + [1] * 10 + [2] * 10)
    assert d.labelled


def test_hidden_folders_are_not_classes(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=5)
    write_folder(root / ".ipynb_checkpoints", classes=(), per_class=2)
    d = load_dataset("folder", size=16, data_dir=root, **SMALL)
    assert d.class_names == ("cat", "dog") and len(d.unlabeled) == 8  # 10 less 2 for testing


def test_grayscale_folder_stays_one_channel(tmp_path):
    write_folder(tmp_path / "g", gray=True, per_class=5)
    d = load_dataset("folder", size=20, data_dir=tmp_path / "g", **SMALL)
    assert d.channels == 1 and d.train_images.shape[1:] == (1, 20, 20)


def test_flat_folder_is_unlabeled_and_the_probe_says_it_needs_labels(tmp_path):
    write_folder(tmp_path / "flat", classes=(), per_class=7)
    d = load_dataset("folder", size=32, data_dir=tmp_path / "flat", **SMALL)
    assert d.unlabeled.shape == (7, 3, 32, 32) and not d.labelled
    assert len(d.train_images) == 0 and d.train_images.shape[1:] == (3, 32, 32)
    with pytest.raises(ValueError, match="needs labelled images.*one subfolder per class"):
        d.require_labels("the probe")


def test_folder_identity_follows_the_images(tmp_path):
    from PIL import Image

    write_folder(tmp_path / "f", per_class=5)
    a = load_dataset("folder", size=16, data_dir=tmp_path / "f", **SMALL)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "f" / "cat" / "img0.png")
    b = load_dataset("folder", size=16, data_dir=tmp_path / "f", **SMALL)
    assert a.spec != b.spec


def test_empty_or_absent_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist"):
        load_dataset("folder", size=32, data_dir=tmp_path / "nope", **SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="no images"):
        load_dataset("folder", size=32, data_dir=tmp_path / "empty", **SMALL)


def test_bad_counts_and_sizes_are_rejected(tmp_path):
    write_idx(tmp_path, name="mnist")
    for kwargs, message in (({"n_train": 0}, "n_train must be a positive int"),
                            ({"size": -3}, "size must be a positive int")):
        with pytest.raises(ValueError, match=message):
            load_dataset("mnist", data_dir=tmp_path, **{**SMALL, "size": 28, **kwargs})


def test_download_happens_only_when_allowed(tmp_path, monkeypatch):
    from ssl_teach.data import real

    calls = []

    def fake_download(name, root):  # stands in for torchvision's download
        calls.append(name)
        write_idx(root, name="mnist")

    monkeypatch.setattr(real, "_download", fake_download)
    with pytest.raises(MissingDataError):
        load_dataset("mnist", size=28, data_dir=tmp_path, **SMALL)
    assert calls == []
    d = load_dataset("mnist", size=28, data_dir=tmp_path, download=True, **SMALL)
    assert calls == ["mnist"] and len(d.unlabeled) == 12
    load_dataset("mnist", size=28, data_dir=tmp_path, download=True, **SMALL)
    assert calls == ["mnist"]  # files present: no second download


def _tiny_quick_profile(monkeypatch):
    from ssl_teach import profiles
    from ssl_teach.train import TrainConfig

    tiny = profiles.Profile(name="quick", image_size=32, n_unlabeled=20, n_train=20, n_test=7,
                            train=TrainConfig(budget_samples=128, batch_size=32, width=4,
                                              depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)


def test_cli_runs_a_task_on_a_real_dataset_end_to_end(tmp_path, monkeypatch):
    from ssl_teach import cli

    write_cifar(tmp_path / "data")
    _tiny_quick_profile(monkeypatch)
    out = tmp_path / "results.json"
    assert cli.main(["run", "rotation", "--dataset", "cifar10", "--data-dir",
                     str(tmp_path / "data"), "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["dataset"] == "cifar10" and res["task"] == "rotation"
    assert set(res["probe"]["linear"]) == {"rotation", "random", "supervised"}
    assert all(0 <= a <= 1 for accs in res["probe"]["linear"].values() for a in accs.values())


def test_cli_explains_missing_files_and_missing_labels(tmp_path, monkeypatch, capsys):
    from ssl_teach import cli

    _tiny_quick_profile(monkeypatch)
    args = ["run", "rotation", "--quiet", "--data-dir"]
    assert cli.main([*args, str(tmp_path), "--dataset", "stl10"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'stl10'" in err and "stl10_binary/train_X.bin" in err and "--download" in err
    write_folder(tmp_path / "flat", classes=(), per_class=4)
    assert cli.main([*args, str(tmp_path / "flat"), "--dataset", "folder"]) == 2
    assert "needs labelled images" in capsys.readouterr().err


def test_cli_help_names_the_data_options():
    from ssl_teach.cli import _parser

    text = _parser()._subparsers._group_actions[0].choices["run"].format_help()
    for option in ("--data-dir", "--download", "SSL_TEACH_DATA", "~/.cache/ssl_teach/datasets"):
        assert option in text


def test_a_flat_folder_trains_a_pretext_task(tmp_path):
    from ssl_teach.experiment import baselines, pretrain
    from ssl_teach.profiles import Profile
    from ssl_teach.train import TrainConfig

    write_folder(tmp_path / "flat", classes=(), per_class=6)
    d = load_dataset("folder", size=32, data_dir=tmp_path / "flat", **SMALL)
    prof = Profile(name="tiny", image_size=32, n_unlabeled=6, n_train=6, n_test=6,
                   train=TrainConfig(budget_samples=48, batch_size=24, width=4, depth=3))
    trained = pretrain("rotation", d, prof, progress=False, cache=False)
    assert trained.history["samples"][-1] == 48
    with pytest.raises(ValueError, match="supervised baseline needs labelled images"):
        baselines(d, prof, progress=False, cache=False)


def test_reading_in_chunks_gives_the_same_images(tmp_path):
    from ssl_teach.data.real import _stl_images, _take

    truth = write_stl10(tmp_path)
    images = _stl_images(tmp_path / "stl10_binary" / "unlabeled_X.bin")  # memory-mapped
    idx = torch.tensor([0, 3, 4, 8])
    whole, _ = _take(images, None, idx, None, chunk=100)
    chunked, _ = _take(images, None, idx, None, chunk=3)
    assert torch.equal(whole, chunked)
    assert torch.equal(whole, torch.from_numpy(truth["unlabeled"][[0, 3, 4, 8]]))


# --- damaged and unusable data: one clear error, before anything trains ----------------------


@pytest.fixture
def no_training(monkeypatch):
    """Training of any kind fails the test: bad data must be found before it starts."""
    import sys

    import ssl_teach.bench  # noqa: F401  (imported so that its name for train is replaced too)
    import ssl_teach.compare  # noqa: F401
    from ssl_teach import train

    def forbidden(*args, **kwargs):
        raise AssertionError("training started before the bad input was found")

    original = train.train
    for name, module in list(sys.modules.items()):
        if name.startswith("ssl_teach") and getattr(module, "train", None) is original:
            monkeypatch.setattr(module, "train", forbidden)


def _cli_error(capsys, argv) -> str:
    """Run the CLI, check it exits with status 2 and one line on stderr; return that line."""
    from ssl_teach import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


def _cifar_batch(tmp_path):
    return tmp_path / "cifar-10-batches-py" / "data_batch_2"


def _pickled(batch):
    return pickle.dumps(batch, protocol=2)


CIFAR_DAMAGE = {
    "truncated": (lambda data: data[:len(data) // 2], "truncated or not a CIFAR file"),
    "garbage": (lambda data: b"\x00garbage, not a pickle" * 40, "truncated or not a CIFAR"),
    "empty": (lambda data: b"", "is empty"),
    "a list": (lambda data: _pickled([1, 2, 3]), "holds a list, not a dict"),
    "label 255": (lambda data: _pickled({**pickle.loads(data), "labels": [255] * 5}),
                  "labels lie outside 0..9.*255"),
    "6 labels for 5 images": (lambda data: _pickled({**pickle.loads(data), "labels": [1] * 6}),
                              "holds 6 labels for 5 images"),
    "half an image": (lambda data: _pickled({**pickle.loads(data),
                                             "data": pickle.loads(data)["data"][:, :1000]}),
                      "not a whole number of 32x32 colour images"),
}


@pytest.mark.parametrize("damage", list(CIFAR_DAMAGE))
def test_damaged_cifar_batches_name_the_file_and_the_fix(tmp_path, damage):
    write_cifar(tmp_path)
    spoil, problem = CIFAR_DAMAGE[damage]
    path = _cifar_batch(tmp_path)
    path.write_bytes(spoil(path.read_bytes()))
    with pytest.raises(DataError, match=problem) as info:
        load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)
    message = str(info.value)
    assert str(path) in message and "--download" in message and "\n" not in message
    assert info.value.path == path


def test_damaged_cifar_fails_in_the_cli_before_training(tmp_path, capsys, no_training):
    write_cifar(tmp_path)
    _cifar_batch(tmp_path).write_bytes(b"")
    err = _cli_error(capsys, ["run", "rotation", "--dataset", "cifar10", "--data-dir",
                              str(tmp_path), "--quiet"])
    assert "data_batch_2: is empty" in err
    # out-of-range labels in the test split: found by the reader, not by the baseline
    write_cifar(tmp_path / "b")
    test_batch = tmp_path / "b" / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(_pickled({**pickle.loads(test_batch.read_bytes()),
                                     "labels": [255] * 7}))
    err = _cli_error(capsys, ["compare", "--dataset", "cifar10", "--data-dir",
                              str(tmp_path / "b"), "--quiet"])
    assert "test_batch" in err and "255" in err


def test_an_unreadable_data_file_is_named(tmp_path, monkeypatch):
    import builtins

    write_cifar(tmp_path)
    locked = _cifar_batch(tmp_path)
    real_open = builtins.open

    def open_(file, *args, **kwargs):  # as root, file permissions cannot make this happen
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    with pytest.raises(DataError, match="data_batch_2: cannot be read \\(permission denied\\)"
                       ".*chmod a\\+r"):
        load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)


def test_a_folder_where_a_data_file_belongs_is_named(tmp_path):
    write_idx(tmp_path, name="mnist", gz=False)
    label_file = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    label_file.unlink()
    label_file.mkdir()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: is a folder where a file"):
        load_dataset("mnist", size=28, data_dir=tmp_path, **SMALL)


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


IDX_DAMAGE = {
    "empty": (lambda data: b"", "is empty"),
    "empty, gzipped": (lambda data: _gz(b""), "is empty"),
    "truncated gz": (lambda data: _gz(data)[:40], "truncated or damaged gzip file"),
    "garbage gz": (lambda data: b"\x1f\x8b\x08\x00garbage" * 3, "damaged gzip|truncated"),
    "truncated data": (lambda data: _gz(data[:-100]), "truncated"),
}


@pytest.mark.parametrize("damage", list(IDX_DAMAGE))
def test_damaged_idx_files_name_the_file(tmp_path, damage):
    write_idx(tmp_path, gz=True)
    path = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    spoil, problem = IDX_DAMAGE[damage]
    path.write_bytes(spoil(gzip.decompress(path.read_bytes())))
    with pytest.raises(DataError, match=problem) as info:
        load_dataset("fashion-mnist", size=28, data_dir=tmp_path, **SMALL)
    assert str(path) in str(info.value) and "--download" in str(info.value)


def test_idx_labels_must_match_the_images_and_the_classes(tmp_path, capsys, no_training):
    write_idx(tmp_path, name="mnist", gz=False)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.arange(11) % 10))  # 11 labels for 12 images
    with pytest.raises(DataError, match="holds 11 labels for 12 images.*train-images"):
        load_dataset("mnist", size=28, data_dir=tmp_path, **SMALL)
    labels.write_bytes(_idx_bytes(np.full(12, 255)))
    err = _cli_error(capsys, ["run", "rotation", "--dataset", "mnist", "--data-dir",
                              str(tmp_path), "--quiet"])
    assert "train-labels-idx1-ubyte" in err and "outside 0..9" in err and "255" in err


def test_damaged_stl10_files_name_the_file(tmp_path):
    write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    (folder / "test_X.bin").write_bytes(b"")
    with pytest.raises(DataError, match="test_X.bin: is empty"):
        load_dataset("stl10", size=96, data_dir=tmp_path, **SMALL)
    write_stl10(tmp_path / "b")
    folder = tmp_path / "b" / "stl10_binary"
    (folder / "train_X.bin").write_bytes((folder / "train_X.bin").read_bytes()[:-7])
    with pytest.raises(DataError, match="train_X.bin: .*not a multiple of 3\\*96\\*96"):
        load_dataset("stl10", size=96, data_dir=tmp_path / "b", **SMALL)
    write_stl10(tmp_path / "c")
    folder = tmp_path / "c" / "stl10_binary"
    (folder / "train_y.bin").write_bytes(bytes([1, 2, 3, 0, 11]))  # stored as 1..10
    with pytest.raises(DataError, match="train_y.bin: 2 labels lie outside 1..10"):
        load_dataset("stl10", size=96, data_dir=tmp_path / "c", **SMALL)


def _corrupt_images(folder: Path):
    """A truncated JPEG and a file of garbage with an image name."""
    from PIL import Image

    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), np.uint8)).save(
        jpeg, format="JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
    (folder / "garbage.png").write_bytes(b"not an image at all" * 10)


def test_a_folder_names_every_unreadable_image_in_one_message(tmp_path, capsys, no_training):
    root = write_folder(tmp_path / "imgs", per_class=6)
    _corrupt_images(root / "cat")
    _corrupt_images(root / "dog")
    with pytest.raises(DataError) as info:
        load_dataset("folder", size=32, data_dir=root, **SMALL)
    message = str(info.value)
    for name in ("cat/truncated.jpg", "cat/garbage.png", "dog/truncated.jpg", "dog/garbage.png"):
        assert name in message
    assert message.startswith(str(root)) and "4 image(s) cannot be read" in message
    err = _cli_error(capsys, ["run", "rotation", "--dataset", "folder", "--data-dir", str(root),
                              "--quiet"])
    assert "4 image(s) cannot be read" in err


def test_an_unreadable_image_or_class_folder_is_an_error(tmp_path, monkeypatch):
    import builtins
    import os

    root = write_folder(tmp_path / "imgs", classes=("cat", "dog", "owl"), per_class=5)
    real_open, real_scandir = builtins.open, os.scandir

    def open_(file, *args, **kwargs):  # as root, permissions cannot make a file unreadable
        if str(file).endswith("dog/img3.png"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    with pytest.raises(DataError, match="1 image\\(s\\) cannot be read: "
                       "dog/img3.png \\(Permission denied\\)"):
        load_dataset("folder", size=16, data_dir=root, **SMALL)
    monkeypatch.setattr(builtins, "open", real_open)

    def scandir(path="."):
        if str(path).endswith("owl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="1 folder\\(s\\) cannot be read: .*owl "
                       "\\(Permission denied\\)"):
        load_dataset("folder", size=16, data_dir=root, **SMALL)  # not two classes, silently


def test_a_folder_with_one_class_is_refused(tmp_path, capsys, no_training):
    root = write_folder(tmp_path / "one", classes=("cat",), per_class=10)
    with pytest.raises(DataError, match="single class subfolder \\('cat'\\).*at least two"):
        load_dataset("folder", size=16, data_dir=root, **SMALL)
    err = _cli_error(capsys, ["run", "rotation", "--dataset", "folder", "--data-dir", str(root),
                              "--quiet"])
    assert "single class subfolder" in err


def test_empty_class_folders_are_named(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=5)
    (root / "empty").mkdir()
    with pytest.warns(UserWarning, match="subfolder\\(s\\) empty hold no images"):
        d = load_dataset("folder", size=16, data_dir=root, **SMALL)
    assert d.class_names == ("cat", "dog")


def test_16_bit_grayscale_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    for cls, value in (("dark", 8_000), ("mid", 32_896), ("bright", 65_535)):
        (tmp_path / "g" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20), value, np.uint16)).save(
                tmp_path / "g" / cls / f"{i}.png")
    assert Image.open(tmp_path / "g" / "mid" / "0.png").mode.startswith("I")
    d = load_dataset("folder", size=20, data_dir=tmp_path / "g", **SMALL)
    assert d.channels == 1
    images = torch.cat([d.train_images, d.test_images])
    labels = torch.cat([d.train_labels, d.test_labels])
    for cls, expected in (("dark", round(8_000 / 257)), ("mid", 128), ("bright", 255)):
        pixels = images[labels == d.class_names.index(cls)]
        assert len(pixels) and (pixels.int() - expected).abs().max() <= 1, cls


def test_enlarging_images_more_than_twice_warns(tmp_path):
    import warnings

    root = write_folder(tmp_path / "small", per_class=5, sizes=(8, 9))
    with pytest.warns(UserWarning, match="10 of 10 images are enlarged more than 2x to "
                      "64x64 \\(the smallest is 8 px, enlarged 8.0x\\)"):
        load_dataset("folder", size=64, data_dir=root, **SMALL)
    root = write_folder(tmp_path / "fine", per_class=5, sizes=(40, 50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 40 px to 64 px is 1.6x: no warning
        load_dataset("folder", size=64, data_dir=root, **SMALL)
    write_idx(tmp_path / "m", name="mnist")
    with pytest.warns(UserWarning, match="dataset 'mnist': 12 of 12 images are enlarged"):
        load_dataset("mnist", size=64, data_dir=tmp_path / "m", **SMALL)


def test_data_options_for_the_scenes_say_they_are_ignored(tmp_path):
    kwargs = {"size": 32, "n_unlabeled": 8, "n_train": 8, "n_test": 8}
    with pytest.warns(UserWarning, match="--data-dir / DATA_DIR and --download / DOWNLOAD are "
                      "ignored for the embedded scenes"):
        load_dataset("scenes", data_dir=tmp_path, download=True, **kwargs)
    with pytest.warns(UserWarning, match="--download / DOWNLOAD is ignored"):
        load_dataset("scenes", download=True, **kwargs)


def test_folder_pretext_images_never_include_the_test_split(tmp_path):
    root = write_folder(tmp_path / "imgs", classes=("cat", "dog", "owl"), per_class=20)
    for n_unlabeled in (None, 30):
        d = load_dataset("folder", size=16, data_dir=root, **{**SMALL,
                                                              "n_unlabeled": n_unlabeled})
        test = {bytes(x.numpy()) for x in d.test_images}
        assert len(test) == len(d.test_images) == 12  # the images are all different
        assert not test & {bytes(x.numpy()) for x in d.unlabeled}
        assert len(d.unlabeled) == (48 if n_unlabeled is None else 30)


def test_like_returns_float_images_in_the_type_they_came_from():
    from ssl_teach.data import like, to_float

    original = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    back = like(to_float(original) * 1.01, original)  # 255 * 1.01 is clamped
    assert back.dtype == torch.uint8 and back.tolist() == [[[[0, 129, 255]]]]
    half = torch.tensor([[[[0.25, 0.5]]]], dtype=torch.float64)
    assert like(half.float() / 2, half).dtype == torch.float64
    assert like(half.float() / 2, half).tolist() == [[[[0.125, 0.25]]]]
