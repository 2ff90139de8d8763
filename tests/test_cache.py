"""Cache files: shareable permissions, no lost work when the cache cannot be written, stale
temporaries removed, and corrupt files reported without unsafe advice."""

import os
import stat
import time
import warnings
from pathlib import Path

import pytest
import torch

from ssl_teach import cache
from ssl_teach.cache import (
    CorruptCacheFile, atomic_save, atomic_write_text, remove_stale_temporaries, safe_load,
)


@pytest.fixture
def umask():
    """Set the process umask for one test (and put the old one back)."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_follow_the_umask(tmp_path, umask):
    umask(0o022)
    atomic_save({"x": torch.ones(2)}, tmp_path / "a.pt")
    atomic_write_text(tmp_path / "a.json", "{}")
    assert _mode(tmp_path / "a.pt") == _mode(tmp_path / "a.json") == 0o644  # readable by all
    umask(0o077)
    atomic_write_text(tmp_path / "private.json", "{}")
    assert _mode(tmp_path / "private.json") == 0o600
    umask(0o002)
    atomic_save({"x": 1}, tmp_path / "group" / "b.pt")
    assert _mode(tmp_path / "group" / "b.pt") == 0o664
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def _tiny_training():
    from ssl_teach.data import load_dataset
    from ssl_teach.pretext import get_task
    from ssl_teach.train import TrainConfig

    data = load_dataset("scenes", size=32, n_unlabeled=16, n_train=16, n_test=8, seed=1,
                        cache=False)
    return get_task("rotation"), data, TrainConfig(budget_samples=32, batch_size=16, width=4,
                                                   depth=3)


def test_a_checkpoint_shared_with_a_lab_is_readable_by_everyone(private_cache, umask):
    from ssl_teach.train import checkpoint_path, train

    umask(0o022)
    task, data, config = _tiny_training()
    train(task, data, config, progress=False)
    path = checkpoint_path(task, data, config)
    assert _mode(path) & 0o044 == 0o044  # group and others may read it
    assert train(task, data, config, progress=False).from_cache


def test_a_cache_that_cannot_be_written_warns_and_keeps_the_trained_model(tmp_path,
                                                                          monkeypatch):
    from ssl_teach.experiment import probe_cached
    from ssl_teach.train import train

    (tmp_path / "a file").write_text("not a folder")
    monkeypatch.setenv("SSL_TEACH_CACHE", str(tmp_path / "a file" / "cache"))
    task, data, config = _tiny_training()
    with pytest.warns(UserWarning, match="could not write the cache file .*checkpoints.*; "
                                         "carrying on without saving it: set SSL_TEACH_CACHE"):
        trained = train(task, data, config, progress=False)
    assert trained.history["samples"][-1] == 32 and not trained.from_cache
    with pytest.warns(UserWarning, match="could not write the cache file .*probes"):
        result = probe_cached(trained, data)
    assert set(result.linear) == set(trained.backbone.block_names)


def test_best_effort_is_asked_for_not_assumed(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "file" / "out.json", "{}")
    with pytest.warns(UserWarning, match="could not write the cache file"):
        assert atomic_write_text(tmp_path / "file" / "out.json", "{}", best_effort=True) is False
    assert atomic_write_text(tmp_path / "ok.json", "{}", best_effort=True) is True


def _old(path: Path, hours: float = 2) -> Path:
    path.write_bytes(b"half a file")
    then = time.time() - hours * 3600
    os.utime(path, (then, then))
    return path


def test_a_killed_run_leaves_no_temporaries_in_the_cache(private_cache):
    folder = private_cache / "checkpoints"
    folder.mkdir(parents=True)
    stale = _old(folder / "rotation-0123456789abcdef0123.pt.a1b2c3d4.tmp")
    other = _old(folder / "jigsaw-0123456789abcdef0123.pt.zz9_x8y7.tmp")
    fresh = _old(folder / "rotation-0123456789abcdef0123.pt.e5f6a7b8.tmp", hours=0.1)
    mine = _old(folder / "notes.tmp")  # not a name the cache writes
    atomic_save({"x": 1}, folder / "exemplar-key.pt")
    assert not stale.exists() and not other.exists()
    assert fresh.exists() and mine.exists()  # a write in progress, and a file not ours


def test_outside_the_cache_only_the_same_files_temporaries_go(tmp_path):
    old_results = _old(tmp_path / "results.json.a1b2c3d4.tmp")
    someone_elses = _old(tmp_path / "report.json.a1b2c3d4.tmp")
    atomic_write_text(tmp_path / "results.json", "{}")
    assert not old_results.exists() and someone_elses.exists()
    assert remove_stale_temporaries(tmp_path) == [someone_elses]


class Custom:
    """A class: what a plain tensor file never holds."""


def test_corrupt_cache_files_are_reported_without_unsafe_advice(tmp_path):
    cases = {"garbage.pt": b"not a checkpoint" * 8, "empty.pt": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    full = tmp_path / "full.pt"
    torch.save({"x": torch.ones(3)}, full)
    (tmp_path / "truncated.pt").write_bytes(full.read_bytes()[:100])
    torch.save({"object": Custom}, tmp_path / "code.pt")
    for name in ("garbage.pt", "empty.pt", "truncated.pt", "code.pt"):
        with pytest.raises(CorruptCacheFile) as info:
            safe_load(tmp_path / name)
        message = str(info.value)
        assert str(tmp_path / name) in message and "it will be rebuilt" in message
        assert "weights_only" not in message and "add_safe_globals" not in message, message
        assert "\n" not in message and "\x1b" not in message
    assert "Custom" in str(pytest.raises(CorruptCacheFile, safe_load, tmp_path / "code.pt").value)


def test_a_corrupt_checkpoint_warns_and_trains_again(private_cache):
    from ssl_teach.train import checkpoint_path, train

    task, data, config = _tiny_training()
    path = checkpoint_path(task, data, config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x02garbage")
    with pytest.warns(UserWarning, match="is unreadable.*training again") as record:
        trained = train(task, data, config, progress=False)
    assert not trained.from_cache
    assert not any("weights_only" in str(w.message) for w in record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train(task, data, config, progress=False).from_cache  # rebuilt and readable


def test_an_unreadable_cache_file_says_whom_to_ask(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    torch.save({"x": 1}, path)

    def denied(*args, **kwargs):  # as root, file permissions cannot make this happen
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache.torch, "load", denied)
    with pytest.raises(CorruptCacheFile, match="permission denied.*chmod a\\+r.*SSL_TEACH_CACHE"):
        safe_load(path)


def test_a_fingerprint_follows_the_values_not_the_objects():
    import dataclasses

    from ssl_teach.cache import fingerprint
    from ssl_teach.models import build_backbone
    from ssl_teach.pretext import get_task

    x = torch.arange(12.0).view(3, 4)
    assert fingerprint(x, {"a": 1, "b": [2, 3]}) == fingerprint(x.clone(), {"b": [2, 3], "a": 1})
    assert fingerprint(x) != fingerprint(x + 1) != fingerprint(x.double())
    net = build_backbone(width=4, depth=2, seed=0)
    same = build_backbone(width=4, depth=2, seed=0).to(memory_format=torch.channels_last)
    assert fingerprint(net) == fingerprint(same)  # the same weights in another memory layout
    assert fingerprint(net) != fingerprint(build_backbone(width=4, depth=2, seed=1))
    task = get_task("jigsaw")
    assert fingerprint(task) == fingerprint(get_task("jigsaw"))
    assert fingerprint(task) != fingerprint(dataclasses.replace(task, gap=0))
    assert fingerprint(task) != fingerprint(get_task("rotation"))
    big = torch.zeros(300, 300)  # large enough to keep its digest between calls
    first = fingerprint(big)
    assert fingerprint(big) == first
    big[7, 7] = 1  # changed in place: computed again, not the kept digest
    assert fingerprint(big) != first
    with torch.inference_mode():
        frozen = torch.zeros(300, 300)
    assert fingerprint(frozen) == first  # inference tensors keep no digest, but hash the same


def test_results_are_cached_by_what_they_depend_on(private_cache, monkeypatch):
    import dataclasses

    from ssl_teach import compare as compare_module
    from ssl_teach import train as train_module
    from ssl_teach.compare import label_efficiency
    from ssl_teach.experiment import probe_cached
    from ssl_teach.train import pretext_accuracy, train

    task, data, config = _tiny_training()
    trained = train(task, data, config, progress=False, cache=False)
    acc = pretext_accuracy(trained, data)
    assert len(list((private_cache / "pretext").glob("*.json"))) == 1
    probe = probe_cached(trained, data, blocks=["block2"])
    assert set(probe.linear) == {"block2"}
    eff = label_efficiency(trained, data, sizes=(1,), seeds=(0, 1))
    assert eff == label_efficiency(trained, data, sizes=(1,), seeds=(0, 1), cache=False)

    def fail(*args, **kwargs):
        raise AssertionError("computed again instead of read from the cache")

    monkeypatch.setattr(train_module, "predict", fail)
    monkeypatch.setattr(compare_module, "extract_features", fail)
    assert pretext_accuracy(trained, data) == acc
    assert label_efficiency(trained, data, sizes=(1,), seeds=(0, 1)) == eff
    # another task on the same network, fewer images: computed, not read
    with pytest.raises(AssertionError, match="computed again"):
        pretext_accuracy(dataclasses.replace(trained, task=dataclasses.replace(task, flip=False)),
                         data)
    with pytest.raises(AssertionError, match="computed again"):
        pretext_accuracy(trained, data, limit=4)
    with pytest.raises(AssertionError, match="computed again"):
        label_efficiency(trained, data, sizes=(1,), seeds=(0,))
    # the probe: other images or other blocks are another probe
    files = set((private_cache / "probes").glob("*.json"))
    assert probe_cached(trained, data, blocks=["block2"]) == probe
    small = dataclasses.replace(data, train_images=data.train_images[:12],
                                train_labels=data.train_labels[:12])
    probe_cached(trained, small, blocks=["block2"])
    probe_cached(trained, data)
    assert len(set((private_cache / "probes").glob("*.json")) - files) == 2
