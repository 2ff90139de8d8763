"""The comparison: every field for every method, balanced label subsets, seeds that only move
the subset."""

import pytest
import torch

from ssl_teach import profiles
from ssl_teach.compare import compare, format_compare, labelled_subset
from ssl_teach.pretext import TASKS
from ssl_teach.train import TrainConfig

TINY = profiles.Profile(name="quick", image_size=64, n_unlabeled=520, n_train=100, n_test=40,
                        train=TrainConfig(budget_samples=64, batch_size=32, width=8, depth=4))


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(profiles.PROFILES, "quick", TINY)
    return TINY


def test_labelled_subsets_are_balanced_and_seeded():
    labels = torch.arange(200) % 10
    a = labelled_subset(labels, 4, seed=0)
    assert torch.equal(labels[a].bincount(minlength=10), torch.full((10,), 4))
    assert torch.equal(a, labelled_subset(labels, 4, seed=0))
    assert not torch.equal(a, labelled_subset(labels, 4, seed=1))
    assert torch.equal(labelled_subset(labels, "all", seed=3), torch.arange(200))
    with pytest.raises(ValueError, match="only 20 labelled images"):
        labelled_subset(labels, 21, seed=0)


def test_compare_produces_every_field_for_every_method(tiny_profile):
    res = compare(list(TASKS), seeds=(0, 1, 2), sizes=(1, 4, "all"), progress=False)
    assert set(res["methods"]) == {*TASKS, "random", "supervised"}
    for name, m in res["methods"].items():
        assert set(m["linear"]) == set(m["knn"]) == {"block1", "block2", "block3", "block4"}
        for acc in [*m["linear"].values(), *m["knn"].values()]:
            assert 0.0 <= acc <= 1.0
        assert set(m["label_efficiency"]) == {"1", "4", "all"}
        for size, v in m["label_efficiency"].items():
            assert 0.0 <= v["mean"] <= 1.0 and v["std"] >= 0.0
            assert len(v["runs"]) == (1 if size == "all" else 3)
        if name in TASKS:
            assert 0.0 <= m["pretext"]["accuracy"] <= 1.0 and 0 < m["pretext"]["chance"] < 1
        else:
            assert m["pretext"] is None
        assert m["cost"]["samples_seen"] >= 0 and m["cost"]["train_seconds"] >= 0
    assert set(res["scratch_supervised"]) == {"1", "4", "all"}
    table = format_compare(res)
    for name in res["methods"]:
        assert name in table


def test_label_subsets_are_disjoint_from_the_test_split(tiny_profile):
    from ssl_teach.experiment import setup

    _, data = setup("quick")
    idx = labelled_subset(data.train_labels, 4, seed=0)
    train = {tuple(x.flatten()[:64].tolist()) for x in data.train_images[idx]}
    test = {tuple(x.flatten()[:64].tolist()) for x in data.test_images}
    assert not train & test


def test_seeds_change_the_subset_and_only_the_subset(tiny_profile):
    a = compare(["rotation"], seeds=(0,), sizes=(1,), progress=False)
    b = compare(["rotation"], seeds=(1,), sizes=(1,), progress=False)
    for name in a["methods"]:  # the trained models and full probes are the same
        assert a["methods"][name]["linear"] == b["methods"][name]["linear"]
        assert a["methods"][name]["pretext"] == b["methods"][name]["pretext"]
    assert any(a["methods"][n]["label_efficiency"]["1"] != b["methods"][n]["label_efficiency"]["1"]
               for n in a["methods"])


def test_bad_input_is_a_clear_error(tiny_profile):
    with pytest.raises(ValueError, match="unknown pretext task 'colour'"):
        compare(["colour"], progress=False)
    with pytest.raises(ValueError, match="at least one seed"):
        compare(["rotation"], seeds=(), progress=False)


def test_readme_shows_a_compare_table_of_the_printed_shape():
    """The README's table has the rows and columns `compare` prints (not its numbers)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    fake = {"dataset": "scenes", "profile": "quick", "seeds": [0, 1, 2],
            "sizes": ["1", "4", "16", "64", "all"], "scratch_supervised": {}, "methods": {}}
    for name in (*TASKS, "random", "supervised"):
        fake["methods"][name] = {
            "linear": {f"block{i}": 0.5 for i in range(1, 5)},
            "knn": {f"block{i}": 0.5 for i in range(1, 5)}, "best_block": "block1",
            "pretext": {"accuracy": 0.5, "chance": 0.1} if name in TASKS else None,
            "label_efficiency": {}, "cost": {"train_seconds": 1.0, "samples_seen": 1,
                                             "epochs": 1.0, "seconds_per_epoch": 1.0}}
    printed = format_compare(fake).splitlines()
    header = next(line for line in printed if line.startswith("linear probe"))
    lines = readme.splitlines()
    assert header in lines, "the README has no compare table with this header"
    start = lines.index(header)
    rows = [line.split()[0] for line in lines[start + 2:start + 2 + len(fake["methods"])]]
    assert rows == list(fake["methods"]), rows
    assert "python -m ssl_teach compare" in readme
