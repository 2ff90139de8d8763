"""Real datasets: each on-disk format, read from tiny files fabricated in the real layout."""

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from ssl_teach.data import DATASETS, MissingDataError, data_root, load_dataset
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
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_dataset("cifar10", size=32, data_dir=tmp_path, **SMALL)


def test_folder_with_class_subfolders_gives_labelled_splits(tmp_path):
    write_folder(tmp_path / "imgs", classes=("cat", "dog", "owl"), per_class=10)
    d = load_dataset("folder", size=24, data_dir=tmp_path / "imgs", **SMALL)
    assert d.class_names == ("cat", "dog", "owl") and d.channels == 3
    assert d.unlabeled.shape == (30, 3, 24, 24)
    assert len(d.test_images) == 6 and len(d.train_images) == 24  # a fifth for testing
    assert sorted(torch.cat([d.train_labels, d.test_labels]).tolist()) == sorted(
        [0] * 10 + [1] * 10 + [2] * 10)
    assert d.labelled


def test_hidden_folders_are_not_classes(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=5)
    write_folder(root / ".ipynb_checkpoints", classes=(), per_class=2)
    d = load_dataset("folder", size=16, data_dir=root, **SMALL)
    assert d.class_names == ("cat", "dog") and len(d.unlabeled) == 10


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
