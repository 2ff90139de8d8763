"""The pre-flight check: bad settings and unusable data fail first, clearly, before training."""

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_teach import cli, preflight as pf
from ssl_teach.data import Dataset
from ssl_teach.preflight import MAX_SEED, check_data, check_device, check_out, check_seed
from ssl_teach.profiles import PROFILES, Profile
from ssl_teach.train import TrainConfig, step_generator


@pytest.fixture
def no_training(monkeypatch):
    """Training of any kind fails the test: bad input must be found before it starts."""
    import ssl_teach.bench  # noqa: F401  (imported so that its name for train is replaced too)
    import ssl_teach.compare  # noqa: F401
    from ssl_teach import train

    def forbidden(*args, **kwargs):
        raise AssertionError("training started before the bad input was found")

    original = train.train
    for name, module in list(sys.modules.items()):
        if name.startswith("ssl_teach") and getattr(module, "train", None) is original:
            monkeypatch.setattr(module, "train", forbidden)


@pytest.fixture
def no_data(monkeypatch):
    """Loading data fails the test: bad settings must be found before it starts."""
    from ssl_teach import bench, experiment

    def forbidden(*args, **kwargs):
        raise AssertionError("data loaded before the bad setting was found")

    monkeypatch.setattr(experiment, "load_dataset", forbidden)
    monkeypatch.setattr(bench, "load_dataset", forbidden)


@pytest.fixture
def tiny_profile(monkeypatch):
    """The quick profile, shrunk so that loading its data takes a moment."""
    from ssl_teach import profiles

    tiny = Profile(name="quick", image_size=32, n_unlabeled=40, n_train=40, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    return tiny


def _cli_error(capsys, argv) -> str:
    """Run the CLI: exit status 2 and one line on stderr, which is returned."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _folder(root: Path, classes=("cat", "dog"), per_class=10, side=40) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes or [""]:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(
                root / c / f"{i}.png")
    return root


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "meta", "gpu0", ""])
def test_unknown_devices_are_refused(device):
    with pytest.raises(ValueError, match="use auto, cpu, cuda, cuda:N .* or mps"):
        check_device(device)


def test_devices_this_machine_lacks_are_refused(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    assert check_device("auto").type in ("cpu", "cuda", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="has 2 GPU\\(s\\): cuda:0 to cuda:1"):
        check_device("cuda:2")


@pytest.mark.parametrize("seed", [2**40, -1, MAX_SEED + 1, True, 1.5, "3"])
def test_seeds_out_of_range_are_refused(seed):
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2,147,483,647"):
        check_seed(seed)


def test_the_largest_seed_works_where_seeds_are_used():
    from ssl_teach.models import build_backbone
    from ssl_teach.probe import labelled_subset

    assert check_seed(MAX_SEED) == MAX_SEED
    step_generator(MAX_SEED, 10**9)  # seeds combine with step numbers into 64 bits
    build_backbone(width=4, depth=2, seed=MAX_SEED)
    labelled_subset(torch.arange(20) % 2, 3, seed=MAX_SEED, num_classes=2)
    with pytest.raises((RuntimeError, ValueError), match="[Oo]verflow"):  # why the limit
        step_generator(2**40, 0)


def test_out_must_be_a_file_we_can_write(tmp_path, monkeypatch):
    assert check_out(tmp_path / "new" / "deeper" / "results.json")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="is a folder; give the name of a file"):
        check_out(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt is a file, so nothing can be written "
                                         "under it"):
        check_out(tmp_path / "notes.txt" / "results.json")

    def read_only(*args, **kwargs):  # as root, permissions cannot make a folder read-only
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match="cannot write in .* \\(Permission denied\\); choose a "
                                         "folder you can write to"):
        check_out(tmp_path / "results.json")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["run", "rotation", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "rotation", "--device", "cuda:abc"], "unknown device 'cuda:abc'"),
    (["run", "rotation", "--seed", str(2**40)], "seed must be an integer"),
    (["compare", "--seeds", "0,-4"], "seed must be an integer"),
    (["bench", "--device", "tpu"], "unknown device 'tpu'"),
    (["compare", "--device", "xla"], "device 'xla' is not supported"),
])
def test_the_cli_refuses_bad_settings_before_loading_data(argv, message, capsys, no_data,
                                                          no_training):
    assert message in _cli_error(capsys, [*argv, "--quiet"] if argv[0] != "bench" else argv)


@pytest.mark.parametrize("command", [["run", "rotation", "--quiet"], ["compare", "--quiet"],
                                     ["bench"]])
def test_the_cli_refuses_an_out_it_cannot_write_before_loading_data(command, tmp_path, capsys,
                                                                    no_data, no_training):
    (tmp_path / "file").write_text("x")
    assert "is a folder" in _cli_error(capsys, [*command, "--out", str(tmp_path)])
    assert "is a file, so nothing" in _cli_error(
        capsys, [*command, "--out", str(tmp_path / "file" / "r.json")])
    assert (tmp_path / "file").read_text() == "x"


def test_a_long_profile_on_a_cpu_says_how_long(monkeypatch):
    full = PROFILES["full"]
    narrow = dataclasses.replace(full, image_size=32, train=dataclasses.replace(
        full.train, width=4, depth=2, convs_per_block=1))  # its budgets, timed in a moment
    with pytest.warns(UserWarning, match="the full profile on a CPU will take a long time: "
                      "about \\d+ (minutes|hours|days) of training \\(rotation 20,000,000 "
                      "samples, supervised 10,000,000 samples.*--device cuda"):
        pf.preflight(profile=narrow, device="cpu", tasks=["rotation", "supervised"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pf.preflight(profile=PROFILES["quick"], device="cpu", tasks=["rotation"])
    # the estimate scales with the budget: a tenth of the samples, about a tenth of the time
    monkeypatch.setattr(pf, "_seconds_per_sample", lambda profile: 0.01)
    with pytest.warns(UserWarning, match="about 28 hours of training \\(each model "
                                         "10,000,000 samples"):
        pf.preflight(profile=PROFILES["full"], device="cpu")
    with pytest.warns(UserWarning, match="about 3 hours"):
        pf.preflight(profile=PROFILES["full"], device="cpu", samples=1_000_000)


# --- data -------------------------------------------------------------------------------------


def _dataset(*, n_unlabeled=64, n_train=60, n_test=30, size=64, classes=10) -> Dataset:
    """Random images with balanced labels: a dataset made in a moment."""
    g = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)

    return Dataset(name="synthetic", unlabeled=images(n_unlabeled),
                   train_images=images(n_train), train_labels=torch.arange(n_train) % classes,
                   test_images=images(n_test), test_labels=torch.arange(n_test) % classes,
                   class_names=tuple(f"c{i}" for i in range(classes)), spec={})


def test_labels_must_match_the_images_and_the_classes():
    data = _dataset()
    check_data(data, tasks=["rotation", "supervised"], label_sizes=[4, "all"])
    bad = data.train_labels.clone()
    bad[3] = 255
    with pytest.raises(ValueError, match="1 train labels lie outside 0..9 .*\\[255\\]"):
        check_data(dataclasses.replace(data, train_labels=bad))
    with pytest.raises(ValueError, match="30 test images but 29 test labels"):
        check_data(dataclasses.replace(data, test_labels=data.test_labels[1:]))


def test_one_class_or_no_labels_cannot_be_probed():
    one = _dataset(classes=1)
    check_data(one, tasks=["rotation"])  # pretext training alone needs no classes
    with pytest.raises(ValueError, match="has 1 class; the probe needs at least two"):
        check_data(one, needs_labels=True)
    with pytest.raises(ValueError, match="needs labelled images"):
        check_data(_dataset(n_train=0), tasks=["supervised"])


def test_every_label_count_asked_for_must_exist_in_every_class():
    data = _dataset(n_train=58)  # classes 0-7 have 6 labelled images, 8 and 9 have 5
    check_data(data, label_sizes=[1, 5, "all"])
    with pytest.raises(ValueError, match="6 labelled images per class asked for, but 2 "
                                         "class\\(es\\) have fewer \\(class 'c8' has 5\\); ask "
                                         "for at most 5 per class"):
        check_data(data, label_sizes=[1, 6, "all"])
    with pytest.raises(ValueError, match="positive int or 'all'"):
        check_data(data, label_sizes=[0])


def test_each_task_gets_enough_images_of_a_size_it_can_use():
    from ssl_teach.pretext import get_task

    data = _dataset()
    check_data(data, tasks=[get_task("exemplar", num_classes=50)])
    with pytest.raises(ValueError, match="'exemplar' needs at least 500 unlabeled images, but "
                                         "dataset 'synthetic' has 64"):
        check_data(data, tasks=["rotation", "exemplar"])
    with pytest.raises(ValueError, match="'jigsaw' needs images of at least"):
        check_data(_dataset(size=16), tasks=["rotation", "jigsaw"])


def test_compare_fails_before_training_on_a_flat_folder_or_too_few_labels(
        tmp_path, capsys, tiny_profile, no_training):
    flat = _folder(tmp_path / "flat", classes=(), per_class=12)
    err = _cli_error(capsys, ["compare", "--dataset", "folder", "--data-dir", str(flat),
                              "--tasks", "rotation", "--quiet"])
    assert "needs labelled images" in err
    few = _folder(tmp_path / "few", per_class=10)  # 8 or so per class left for training
    err = _cli_error(capsys, ["compare", "--dataset", "folder", "--data-dir", str(few),
                              "--tasks", "rotation", "--quiet"])
    assert "labelled images per class asked for" in err and "ask for at most" in err
    from ssl_teach.compare import compare

    with pytest.raises(ValueError, match="labelled images per class asked for"):
        compare(["rotation"], dataset="folder", data_dir=few, sizes=(4, 64, "all"),
                progress=False)


def test_bench_fails_before_training_when_exemplar_has_too_few_images(capsys, monkeypatch,
                                                                      no_training):
    from ssl_teach import profiles

    tiny = Profile(name="quick", image_size=64, n_unlabeled=100, n_train=100, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    err = _cli_error(capsys, ["bench", "--tasks", "rotation,exemplar", "--images", "100"])
    assert "'exemplar' needs at least 500 unlabeled images" in err


def test_run_fails_before_training_when_a_task_cannot_use_the_images(
        tmp_path, capsys, monkeypatch, no_training):
    from ssl_teach import profiles

    tiny = Profile(name="quick", image_size=16, n_unlabeled=40, n_train=40, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    err = _cli_error(capsys, ["run", "exemplar", "--quiet"])
    assert "needs images of at least" in err


def test_notebook_setup_runs_the_same_check(tmp_path, tiny_profile, no_data):
    from ssl_teach.experiment import setup

    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        setup("quick", "scenes", device="tpu")
    with pytest.raises(ValueError, match="seed must be an integer"):
        setup("quick", "scenes", seed=-1)


def test_notebook_setup_checks_the_data_it_loaded(tmp_path, tiny_profile):
    from ssl_teach.experiment import setup

    flat = _folder(tmp_path / "flat", classes=(), per_class=6)
    profile, data = setup("quick", "folder", data_dir=flat, tasks=["rotation"])
    assert not data.labelled and profile.image_size == 32
    with pytest.raises(ValueError, match="needs labelled images"):
        setup("quick", "folder", data_dir=flat, tasks=["rotation", "supervised"])
