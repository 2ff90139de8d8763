"""The settings the papers used: the full profile's task options and STL-10's fold protocol."""

import numpy as np
import pytest
import torch

from ssl_teach import cli
from ssl_teach.data import Dataset, load_dataset
from ssl_teach.data.real import DataError, MissingDataError, read_stl10_folds
from ssl_teach.experiment import format_stl10_folds, pretrain, run, stl10_fold_probe
from ssl_teach.models import build_backbone
from ssl_teach.pretext import TASKS, get_task
from ssl_teach.probe import extract_features
from ssl_teach.profiles import Profile, get_profile
from ssl_teach.train import SupervisedTask, TrainConfig, Trained

TINY = TrainConfig(budget_samples=32, batch_size=16, width=4, depth=4)


# ----------------------------------------------------------------- the full profile's tasks

def test_full_profile_trains_each_task_as_the_papers_and_released_code_do():
    full = get_profile("full")
    rotation = full.task("rotation")
    # the released CIFAR-10 recipe: pad 4 px at 32 px (8 px at our 64 px), crop, flip
    assert rotation.crop_pad == 4 * full.image_size // 32 and rotation.flip
    exemplar = full.task("exemplar")
    per_class = full.train_config("exemplar").budget_samples / exemplar.num_classes
    assert exemplar.num_classes >= 8_000 and 100 <= per_class <= 1_000  # thousands, a few
    # hundred samples each (the paper: up to 32,000 classes)
    assert full.task("jigsaw").num_permutations == 1000  # the paper's main set
    assert full.task("relative_patch").colour_drop  # the released code always drops colour
    simclr = full.task("simclr")  # the paper's crops, views at the image's size, and every
    # view of a training batch compared with every other
    assert (simclr.min_scale, simclr.view_size) == (0.08, 0) and (
        2 * simclr.group == full.train_config("simclr").batch_size)
    for name in TASKS:  # every option fits the profile's images
        assert full.task(name).min_image_size <= full.image_size, name


def test_quick_profile_keeps_the_task_defaults_and_options_can_be_overridden():
    quick = get_profile("quick")
    for name in TASKS:
        assert quick.task(name) == get_task(name), name
    assert get_profile("full").task("jigsaw", num_permutations=100).num_permutations == 100


def test_pretrain_by_name_makes_the_task_with_the_profile_options():
    images = (torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
              ).to(torch.uint8)
    data = Dataset(name="fabricated", unlabeled=images, train_images=images,
                   train_labels=torch.arange(24) % 2, test_images=images[:8],
                   test_labels=torch.arange(8) % 2, class_names=("a", "b"),
                   spec={"name": "fabricated", "n": 24})
    profile = Profile(name="tiny", image_size=32, n_unlabeled=24, n_train=24, n_test=8,
                      train=TINY, task_options={"rotation": {"crop_pad": 2}})
    trained = pretrain("rotation", data, profile, progress=False, cache=False)
    assert trained.task.crop_pad == 2 and trained.config["options"]["crop_pad"] == 2


# ----------------------------------------------------------------- STL-10's folds

def write_stl10(root, *, n_train=60, n_test=30, folds=10, fold_size=20):
    """Tiny STL-10 binaries (column-major images, labels 1..10) whose brightness tells the
    class, and a fold file of ``folds`` lines of zero-based training indices."""
    g = np.random.default_rng(0)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", 12)):
        y = np.arange(n) % 10
        x = (g.random((n, 3, 96, 96)) * 60 + 18 * y[:, None, None, None]).astype(np.uint8)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(
            x.transpose(0, 1, 3, 2)).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    lines = [" ".join(str(i) for i in g.permutation(n_train)[:fold_size]) for _ in range(folds)]
    (folder / "fold_indices.txt").write_text("\n".join(lines) + "\n")
    return [torch.tensor([int(x) for x in line.split()]) for line in lines]


def test_stl10_folds_are_read_from_the_fold_file(tmp_path):
    written = write_stl10(tmp_path)
    folds = read_stl10_folds(tmp_path)
    assert len(folds) == 10 and all(torch.equal(a, b) for a, b in zip(folds, written))
    assert all(f.dtype == torch.int64 for f in folds)
    with pytest.raises(MissingDataError, match="fold_indices.txt.*--download"):
        read_stl10_folds(tmp_path / "elsewhere")
    path = tmp_path / "stl10_binary" / "fold_indices.txt"
    path.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match="fold_indices.txt: has 2 folds, STL-10 defines 10"):
        read_stl10_folds(tmp_path)
    path.write_text("1 2 x\n" * 10)
    with pytest.raises(DataError, match="not STL-10's fold file"):
        read_stl10_folds(tmp_path)
    path.write_text("1 2 2\n" * 10)
    with pytest.raises(DataError, match="repeats an index"):
        read_stl10_folds(tmp_path)


def test_the_fold_protocol_fits_the_probe_on_each_fold_and_averages(tmp_path, monkeypatch):
    write_stl10(tmp_path)
    data = load_dataset("stl10", size=16, data_dir=tmp_path, n_unlabeled=None, n_train=None,
                        n_test=None, seed=0)
    folds = read_stl10_folds(tmp_path)
    backbone = build_backbone(width=4, depth=2, seed=0)
    task = SupervisedTask()
    trained = Trained(task, task.build_model(backbone), {}, {}, {})
    train_f = extract_features(backbone, data.train_images, device="cpu")
    test_f = extract_features(backbone, data.test_images, device="cpu")
    calls = []

    def recording_probe(train_x, train_y, test_x, test_y, *, num_classes, seed=0):
        """Stands in for the linear probe: records what it was fitted and tested on."""
        calls.append((train_x, train_y, test_x, test_y))
        return {"accuracy": len(calls) / 100, "l2": 0.1}

    monkeypatch.setattr("ssl_teach.probe.linear_probe", recording_probe)
    out = stl10_fold_probe(trained, data, folds, device="cpu")
    assert list(out) == ["block1", "block2"] and len(calls) == 20
    for k, (train_x, train_y, test_x, test_y) in enumerate(calls):  # block1's 10, block2's
        block, fold = f"block{k // 10 + 1}", folds[k % 10]
        assert torch.allclose(train_x, train_f[block][fold])  # that fold's images only
        assert torch.equal(train_y, data.train_labels[fold])
        assert torch.allclose(test_x, test_f[block]) and torch.equal(test_y, data.test_labels)
    runs = [k / 100 for k in range(11, 21)]
    assert out["block2"]["runs"] == pytest.approx(runs)
    assert out["block2"]["mean"] == pytest.approx(float(np.mean(runs)))
    assert out["block2"]["std"] == pytest.approx(float(np.std(runs, ddof=1)))
    assert list(stl10_fold_probe(trained, data, folds, device="cpu", blocks=["block2"])) == [
        "block2"]
    text = format_stl10_folds({"random": out})
    assert "10 training folds" in text and "15.5±3.0%" in text


def test_the_fold_protocol_refuses_data_it_does_not_fit(tmp_path):
    write_stl10(tmp_path)
    folds = read_stl10_folds(tmp_path)
    task = SupervisedTask()
    trained = Trained(task, task.build_model(build_backbone(width=4, depth=2)), {}, {}, {})
    sub = load_dataset("stl10", size=32, data_dir=tmp_path, n_unlabeled=None, n_train=30,
                       n_test=None, seed=0)
    with pytest.raises(ValueError, match="n_train >= 5,000"):
        stl10_fold_probe(trained, sub, folds)
    scenes = load_dataset("scenes", size=32, n_unlabeled=16, n_train=20, n_test=10, seed=0)
    with pytest.raises(ValueError, match="needs the stl10 dataset"):
        stl10_fold_probe(trained, scenes, folds)


def test_stl10_folds_option_fails_before_training(tmp_path, capsys):
    assert cli.main(["run", "rotation", "--stl10-folds", "--quiet"]) == 2
    assert "--stl10-folds" in capsys.readouterr().err
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "fold_indices.txt").unlink()
    with pytest.raises(MissingDataError, match="fold_indices.txt"):
        run("rotation", dataset="stl10", data_dir=tmp_path, stl10_folds=True, progress=False)
