"""The training loop and its checkpoint cache."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ssl_teach.cache import config_key
from ssl_teach.data import load_dataset
from ssl_teach.pretext import get_task
from ssl_teach.train import (
    AUTO_WORKERS, SupervisedTask, TrainConfig, _loader, _make_batches, checkpoint_path, predict,
    pretext_accuracy, resolve_workers, select_device, train, training_data, untrained,
)

TINY = TrainConfig(budget_samples=256, batch_size=64, width=8, depth=3)


def test_training_records_history_and_timings(tiny_scenes):
    t = train(get_task("rotation"), tiny_scenes, TINY, progress=False)
    assert len(t.history["loss"]) == 4 and t.history["samples"][-1] == 256
    assert t.seconds["batch"] > 0 and t.seconds["step"] > 0
    assert not t.model.training


def test_progress_bar_is_on_by_default_and_tqdm_disable_turns_it_off(tiny_scenes, capsys):
    train(get_task("rotation"), tiny_scenes, TINY, cache=False, desc="bar shown")
    assert "bar shown" in capsys.readouterr().err
    train(get_task("rotation"), tiny_scenes, TINY, cache=False, progress=False, desc="bar off")
    assert "bar off" not in capsys.readouterr().err
    # tqdm reads TQDM_DISABLE when it is imported: the book's build sets it for its kernels
    code = ("from ssl_teach.data import load_dataset; from ssl_teach.pretext import get_task; "
            "from ssl_teach.train import TrainConfig, train; "
            "data = load_dataset('scenes', size=32, n_unlabeled=16, n_train=16, n_test=8, "
            "cache=False); train(get_task('rotation'), data, TrainConfig(budget_samples=32, "
            "batch_size=16, width=4, depth=3), cache=False, desc='bar hidden')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr
    assert "bar hidden" not in run.stderr


def test_same_seed_same_weights_other_seed_other_weights(tiny_scenes, private_cache):
    task = get_task("rotation")
    a = train(task, tiny_scenes, TINY, progress=False, cache=False)
    b = train(task, tiny_scenes, TINY, progress=False, cache=False)
    c = train(task, tiny_scenes, TrainConfig(**{**TINY.__dict__, "seed": 1}), progress=False,
              cache=False)
    for (k, va), vb, vc in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                               c.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in
               zip(a.model.state_dict().values(), c.model.state_dict().values()))


@pytest.mark.parametrize("name", ["rotation", "exemplar", "jigsaw", "relative_patch"])
def test_loader_workers_make_the_same_batches_as_the_training_process(name):
    """Each step has its own seeded generator: two worker processes, each making every other
    step, deliver exactly the batches the training process would make itself, in order."""
    data = load_dataset("scenes", size=64, n_unlabeled=64, n_train=20, n_test=20, seed=5)
    task = get_task(name, **({"num_classes": 40} if name == "exemplar" else {}))
    images, labels = training_data(task, data)
    steps = dict(n_images=16, steps=5, seed=7)
    here = list(_make_batches(task, images, labels, device=torch.device("cpu"), **steps))
    loaded = list(_loader(task, images, labels, workers=2, pin=False, **steps))
    assert len(here) == len(loaded) == 5
    for (x, y), (lx, ly) in zip(here, loaded):
        assert torch.equal(y, ly)
        assert torch.allclose(x, lx, atol=1e-6)  # one thread per worker: same sums, or nearly


def test_training_with_loader_workers_gives_the_same_model(tiny_scenes):
    task = get_task("rotation")
    a = train(task, tiny_scenes, TINY, progress=False, cache=False)
    b = train(task, tiny_scenes, TINY, progress=False, cache=False, workers=2)
    assert b.seconds["batch"] > 0
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k
    with pytest.raises(ValueError, match="workers must be 0"):
        train(task, tiny_scenes, TINY, progress=False, cache=False, workers=-1)


def test_workers_auto_and_bad_values():
    import os

    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    cpu = torch.device("cpu")
    assert resolve_workers(3, images, cpu) == 3
    assert resolve_workers("auto", images, cpu) == max(0, min(AUTO_WORKERS, os.cpu_count() - 1))
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ValueError, match="workers must be"):
            resolve_workers(bad, images, cpu)
    from ssl_teach import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "rotation", "--workers", "some"])
    assert exit_info.value.code == 2


def test_cache_hit_returns_the_same_model(tiny_scenes):
    task = get_task("rotation")
    a = train(task, tiny_scenes, TINY, progress=False)
    assert checkpoint_path(task, tiny_scenes, TINY).exists()
    b = train(task, tiny_scenes, TINY, progress=False)
    assert b.from_cache and not a.from_cache
    assert all(torch.equal(x, y) for x, y in
               zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert b.history == a.history


def test_corrupt_checkpoint_retrains_with_a_warning(tiny_scenes):
    task = get_task("rotation")
    train(task, tiny_scenes, TINY, progress=False)
    path = checkpoint_path(task, tiny_scenes, TINY)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as after a crash
    with pytest.warns(UserWarning, match="unreadable"):
        t = train(task, tiny_scenes, TINY, progress=False)
    assert not t.from_cache
    assert train(task, tiny_scenes, TINY, progress=False).from_cache  # rewritten whole


def test_checkpoint_of_another_shape_is_not_loaded(tiny_scenes):
    task = get_task("rotation")
    train(task, tiny_scenes, TINY, progress=False)
    path = checkpoint_path(task, tiny_scenes, TINY)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state"] = {"nonsense": torch.zeros(1)}
    torch.save(ckpt, path)
    with pytest.warns(UserWarning, match="does not fit"):
        assert not train(task, tiny_scenes, TINY, progress=False).from_cache


def test_no_temporary_files_are_left_behind(tiny_scenes, private_cache):
    train(get_task("rotation"), tiny_scenes, TINY, progress=False)
    assert not list(private_cache.rglob("*.tmp"))


def test_every_setting_changes_the_cache_key(tiny_scenes):
    task = get_task("rotation")
    base = checkpoint_path(task, tiny_scenes, TINY)
    assert checkpoint_path(get_task("rotation", flip=False), tiny_scenes, TINY) != base
    for field, value in (("budget_samples", 512), ("lr", 0.05), ("width", 16), ("seed", 7)):
        other = TrainConfig(**{**TINY.__dict__, field: value})
        assert checkpoint_path(task, tiny_scenes, other) != base, field
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})


def test_supervised_baseline_learns_and_random_init_is_untouched(tiny_scenes):
    sup = SupervisedTask(num_classes=10)
    cfg = TrainConfig(budget_samples=2000, batch_size=64, width=8, depth=3)
    t = train(sup, tiny_scenes, cfg, progress=False)
    assert t.history["loss"][-1] < t.history["loss"][0]
    # its held-out "pretext" accuracy is the test accuracy on the true labels
    _, targets, _ = predict(t, tiny_scenes.test_images, tiny_scenes.test_labels)
    assert torch.equal(targets, tiny_scenes.test_labels)
    assert 0.0 <= pretext_accuracy(t, tiny_scenes) <= 1.0
    r = untrained(sup, tiny_scenes, cfg)
    assert r.history["loss"] == [] and not r.model.training


def test_supervised_evaluation_sees_the_test_images_as_they_are(tiny_scenes):
    """predict (behind the supervised test accuracy) never flips test images at random: the
    inputs are the images themselves, the logits the model's on them, whatever the seed."""
    from ssl_teach.data import to_float

    t = train(SupervisedTask(num_classes=10), tiny_scenes, TINY, progress=False, cache=False)
    images, labels = tiny_scenes.test_images, tiny_scenes.test_labels
    a, targets, inputs = predict(t, images, labels, seed=1, keep_inputs=True)
    b, _, _ = predict(t, images, labels, seed=2)
    assert torch.equal(inputs, to_float(images)) and torch.equal(targets, labels)
    assert torch.equal(a, b)
    exact, _, _ = predict(t, images, labels, precision="float32")
    with torch.no_grad():
        direct = t.model(to_float(images))
    assert torch.allclose(exact, direct, atol=1e-4)
    assert pretext_accuracy(t, tiny_scenes, seed=1) == pretext_accuracy(t, tiny_scenes, seed=2)


def test_trained_and_loaded_models_are_channels_last_and_tagged(tiny_scenes):
    task = get_task("rotation")
    a = train(task, tiny_scenes, TINY, progress=False)
    b = train(task, tiny_scenes, TINY, progress=False)  # from the cache
    assert b.from_cache
    for t in (a, b, untrained(task, tiny_scenes, TINY)):
        weight = t.model.backbone.blocks[0][0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) and not t.model.training
        assert t.backbone.trained_precision == t.config["train"]["precision"]


def test_pretext_accuracy_is_a_share(tiny_scenes):
    t = train(get_task("rotation"), tiny_scenes, TINY, progress=False)
    acc = pretext_accuracy(t, tiny_scenes, limit=20)
    assert 0.0 <= acc <= 1.0


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


def test_cli_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "ssl_teach", "run", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for option in ("--profile", "--seed", "--device", "--dataset", "--out"):
        assert option in out


def test_cli_rejects_unknown_task_and_dataset():
    for args, message in ((["run", "colorize"], "unknown pretext task 'colorize'"),
                          (["run", "rotation", "--dataset", "imagenet"],
                           "unknown dataset 'imagenet'")):
        res = subprocess.run([sys.executable, "-m", "ssl_teach", *args], capture_output=True,
                             text=True)
        assert res.returncode == 2 and message in res.stderr


def test_cli_writes_results_json(tmp_path, monkeypatch):
    from ssl_teach import cli, finetune, profiles

    tiny = profiles.Profile(name="quick", image_size=32, n_unlabeled=128, n_train=100,
                            n_test=50, train=TrainConfig(budget_samples=256, batch_size=64,
                                                         width=8, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    # a few fine-tuning steps: the JSON's fields are checked here, the numbers elsewhere
    monkeypatch.setitem(finetune.RECIPES, "quick",
                        finetune.FinetuneConfig(steps=4, batch_size=16, eval_every=2))
    out = tmp_path / "results.json"
    assert cli.main(["run", "rotation", "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["task"] == "rotation" and res["dataset"] == "scenes" and res["profile"] == "quick"
    assert res["pretext"]["chance"] == 0.25 and 0 <= res["pretext"]["accuracy"] <= 1
    for metric in ("linear", "knn"):
        assert set(res["probe"][metric]) == {"rotation", "random", "supervised"}
        for accs in res["probe"][metric].values():
            assert set(accs) == {"block1", "block2", "block3"}
    assert {"pretext_batch_total", "train_step_total", "probe"} <= set(res["seconds"])
    assert set(res["downstream"]["finetune"]) == {"rotation", "random"}


def test_a_dataset_changed_in_code_is_never_served_the_originals_cache(tiny_scenes,
                                                                       private_cache):
    import dataclasses

    from ssl_teach.finetune import FinetuneConfig, run_key

    task = get_task("rotation")
    train(task, tiny_scenes, TINY, progress=False)
    # the same spec (name, size, counts, seed), other images: another model
    changed = dataclasses.replace(tiny_scenes, unlabeled=tiny_scenes.unlabeled.flip(-1))
    assert changed.spec == tiny_scenes.spec
    assert checkpoint_path(task, changed, TINY) != checkpoint_path(task, tiny_scenes, TINY)
    assert not train(task, changed, TINY, progress=False).from_cache
    assert train(task, changed, TINY, progress=False).from_cache
    # an image changed in place is a change too
    copy = dataclasses.replace(tiny_scenes, unlabeled=tiny_scenes.unlabeled.clone())
    before = checkpoint_path(task, copy, TINY)
    assert before == checkpoint_path(task, tiny_scenes, TINY)
    copy.unlabeled[0, 0, 0, 0] ^= 1
    assert checkpoint_path(task, copy, TINY) != before
    # fine-tuning: other test images are another run
    init = train(task, tiny_scenes, TINY, progress=False)
    other_test = dataclasses.replace(tiny_scenes, test_images=tiny_scenes.test_images.flip(-1))
    idx = torch.arange(8)
    assert (run_key(init, tiny_scenes, idx, FinetuneConfig(), 0)
            != run_key(init, other_test, idx, FinetuneConfig(), 0))
