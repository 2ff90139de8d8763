"""The comparison: every field for every method, balanced label subsets, seeds that only move
the subset, and no choice that the test labels could change."""

import dataclasses
import json
import shutil

import pytest
import torch

from ssl_teach import compare as compare_module
from ssl_teach import finetune, probe, profiles
from ssl_teach.compare import check_sizes, compare, format_compare, labelled_subset
from ssl_teach.pretext import TASKS
from ssl_teach.train import TrainConfig

TINY = profiles.Profile(name="quick", image_size=64, n_unlabeled=520, n_train=100, n_test=40,
                        train=TrainConfig(budget_samples=64, batch_size=32, width=8, depth=4))
TINY_RECIPE = finetune.FinetuneConfig(steps=4, batch_size=16, eval_every=2)


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(profiles.PROFILES, "quick", TINY)
    monkeypatch.setitem(finetune.RECIPES, "quick", TINY_RECIPE)
    # a few L-BFGS iterations per fit: these tests check what is chosen and reported, and on
    # a tiny dataset the optimiser's own bookkeeping would take most of their time
    fit = probe.fit_logistic
    monkeypatch.setattr(probe, "fit_logistic", lambda *a, **k: fit(*a, **{**k, "max_iter": 5}))
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
    res = compare(list(TASKS), seeds=(0, 1), sizes=(4, "all"), progress=False)
    assert set(res["methods"]) == {*TASKS, "random", "supervised"}
    assert res["finetune_recipe"] == dataclasses.asdict(TINY_RECIPE)
    for name, m in res["methods"].items():
        blocks = {"block1", "block2", "block3", "block4"}
        assert set(m["linear"]) == set(m["knn"]) == set(m["val"]) == blocks
        assert m["best_block"] == max(m["val"], key=m["val"].get)  # chosen on validation
        for acc in [*m["linear"].values(), *m["knn"].values()]:
            assert 0.0 <= acc <= 1.0
        for key in ("label_efficiency", "finetune"):
            assert set(m[key]) == {"4", "all"}
            for size, v in m[key].items():
                assert 0.0 <= v["mean"] <= 1.0 and v["std"] >= 0.0
                one = key == "label_efficiency" and size == "all"  # the probe table's number
                assert len(v["runs"]) == (1 if one else 2)
        assert m["label_efficiency"]["all"]["blocks"] == [m["best_block"]]
        assert set(m["label_efficiency"]["4"]["blocks"]) <= blocks
        assert all(1 <= s <= TINY_RECIPE.steps for s in m["finetune"]["4"]["steps"])
        if name in TASKS:
            assert 0.0 <= m["pretext"]["accuracy"] <= 1.0 and 0 < m["pretext"]["chance"] < 1
        else:
            assert m["pretext"] is None
        assert m["cost"]["samples_seen"] >= 0 and m["cost"]["train_seconds"] >= 0
    assert res["scratch_supervised"] == res["methods"]["random"]["finetune"]
    helps = res["pretraining_helps"]
    assert set(helps) == {*TASKS, "supervised"}
    for h in helps.values():
        assert set(h["helps"]) == {"4", "all"} and h["up_to"] in (None, 4, "all")
    table = format_compare(res)
    for name in res["methods"]:
        assert name in table
    assert "random = scratch" in table and "does pretraining pay off?" in table


def test_changing_the_test_labels_changes_no_choice(tiny_profile, monkeypatch, private_cache):
    """Best block, L2, the subsets' blocks and the fine-tuning steps kept: all chosen without
    the test labels, so shuffling them changes only the reported accuracies."""
    a = compare(["rotation"], seeds=(0, 1), sizes=(4, "all"), progress=False)
    real_setup = compare_module.setup

    def shuffled_test_labels(*args, **kwargs):
        prof, data = real_setup(*args, **kwargs)
        perm = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(0))
        return prof, dataclasses.replace(data, test_labels=data.test_labels[perm])

    monkeypatch.setattr(compare_module, "setup", shuffled_test_labels)
    for cached in ("probes", "finetune"):  # the checkpoints may stay: they never see labels
        shutil.rmtree(private_cache / cached)
    b = compare(["rotation"], seeds=(0, 1), sizes=(4, "all"), progress=False)
    reported = []
    for name, m in a["methods"].items():
        n = b["methods"][name]
        assert (m["best_block"], m["val"], m["l2"]) == (n["best_block"], n["val"], n["l2"])
        for size in ("4", "all"):
            le, le2 = m["label_efficiency"][size], n["label_efficiency"][size]
            assert (le["blocks"], le["l2"]) == (le2["blocks"], le2["l2"])
            ft, ft2 = m["finetune"][size], n["finetune"][size]
            assert (ft["steps"], ft["val"]) == (ft2["steps"], ft2["val"])
            reported.append(ft["runs"] != ft2["runs"] or le["runs"] != le2["runs"])
        reported.append(m["linear"] != n["linear"])
    assert any(reported)  # the shuffled labels did reach the reported numbers


def test_label_subsets_are_disjoint_from_the_test_split(tiny_profile):
    from ssl_teach.experiment import setup

    _, data = setup("quick")
    idx = labelled_subset(data.train_labels, 4, seed=0)
    train = {tuple(x.flatten()[:64].tolist()) for x in data.train_images[idx]}
    test = {tuple(x.flatten()[:64].tolist()) for x in data.test_images}
    assert not train & test


def test_seeds_change_the_subset_and_only_the_subset(tiny_profile):
    a = compare(["rotation"], seeds=(0, 1), sizes=(4,), progress=False)
    b = compare(["rotation"], seeds=(1,), sizes=(4,), progress=False)
    differ = []
    for name, m in a["methods"].items():  # the trained models and full probes are the same
        n = b["methods"][name]
        assert (m["linear"], m["pretext"]) == (n["linear"], n["pretext"])
        for key in ("label_efficiency", "finetune"):  # seed 1's run, whatever the other seeds
            assert n[key]["4"]["runs"] == m[key]["4"]["runs"][1:]
            differ.append(m[key]["4"]["runs"][0] != m[key]["4"]["runs"][1])
    assert any(differ)  # another seed, another labelled subset


def test_bad_input_is_a_clear_error(tiny_profile):
    with pytest.raises(ValueError, match="unknown pretext task 'colour'"):
        compare(["colour"], progress=False)
    with pytest.raises(ValueError, match="at least one seed"):
        compare(["rotation"], seeds=(), progress=False)
    with pytest.raises(ValueError, match="increasing order"):
        compare(["rotation"], sizes=(16, 4), progress=False)
    with pytest.raises(ValueError, match="positive integers or 'all'"):
        compare(["rotation"], sizes=(0, "all"), progress=False)
    with pytest.raises(ValueError, match="at most 10 per class"):  # the pre-flight check
        compare(["rotation"], sizes=(4, 11), progress=False)


def test_label_counts_are_read_from_text_and_checked():
    assert check_sizes(["4", "16", "all"]) == [4, 16, "all"]
    for bad in (["all", "4"], ["4", "4"], ["four"], []):
        with pytest.raises(ValueError):
            check_sizes(bad)


def test_sweep_trains_each_budget_and_fine_tunes_it(tiny_profile):
    from ssl_teach.sweep import format_sweep, scaled_profile, sweep

    res = sweep(["rotation"], multipliers=(1, 2), seeds=(0, 1), size=4, progress=False)
    rows = res["runs"]["rotation"]
    assert [r["multiplier"] for r in rows] == [1, 2]
    assert [r["budget_samples"] for r in rows] == [64, 128]
    assert rows[0]["probe"] != rows[1]["probe"]  # two trained models, not one
    for r in rows:
        assert r["probe"]["best_block"] in r["probe"]["per_block"]
        assert len(r["finetune"]["runs"]) == 2 and 0 <= r["finetune"]["mean"] <= 1
    assert len(res["scratch"]["runs"]) == 2
    table = format_sweep(res)
    assert "x1" in table and "x2" in table and "from scratch, 4 labels/class" in table
    assert scaled_profile(TINY, "rotation", 8).train_config("rotation").budget_samples == 512
    assert scaled_profile(TINY, "rotation", 8).train_config("jigsaw").budget_samples == 64
    with pytest.raises(ValueError, match="multipliers must be positive integers"):
        sweep(["rotation"], multipliers=(0,), progress=False)
    with pytest.raises(ValueError, match="unknown pretext task"):
        sweep(["colour"], progress=False)


def test_seed_spread_trains_every_method_with_every_training_seed(tiny_profile, capsys):
    from ssl_teach import cli
    from ssl_teach.compare import format_seed_spread, seed_spread

    res = seed_spread(["rotation", "jigsaw"], train_seeds=(0, 1, 2), progress=False)
    assert set(res["methods"]) == {"rotation", "jigsaw", "random", "supervised"}
    for name, m in res["methods"].items():
        assert len(m["probe"]["runs"]) == 3 and len(m["blocks"]) == 3
        assert (m["pretext"] is None) == (name in ("random", "supervised"))
    # the seeds really differ: three random initialisations probe differently
    assert len(set(res["methods"]["random"]["probe"]["runs"])) > 1
    assert len(res["ranking"]) == 1 and set(res["ranking"][0]["pair"]) == {"rotation", "jigsaw"}
    text = format_seed_spread(res)
    assert "training seeds [0, 1, 2]" in text and "rotation" in text
    # the command line: --train-seeds measures the spread instead of the label efficiency
    assert cli.main(["compare", "--tasks", "rotation,jigsaw", "--train-seeds", "0,1,2",
                     "--quiet"]) == 0
    assert "which tasks can be ranked" in capsys.readouterr().out


def test_seed_spread_needs_three_different_seeds(tiny_profile):
    from ssl_teach.compare import seed_spread

    for seeds in ((0, 1), (0, 1, 1)):
        with pytest.raises(ValueError, match="at least three different training seeds"):
            seed_spread(["rotation"], train_seeds=seeds, progress=False)
    with pytest.raises(ValueError, match="unknown pretext task 'spin'"):
        seed_spread(["spin"], progress=False)


def test_tasks_within_the_spread_are_not_ranked():
    from ssl_teach.compare import rank_tasks

    def s(mean, std):
        return {"mean": mean, "std": std, "runs": [mean]}

    methods = {"a": {"probe": s(0.70, 0.01)}, "b": {"probe": s(0.60, 0.01)},
               "c": {"probe": s(0.69, 0.02)}}
    ranking = {tuple(r["pair"]): r["ranked"] for r in rank_tasks(methods, ["a", "b", "c"])}
    assert ranking == {("a", "b"): True, ("a", "c"): False, ("c", "b"): True}


def test_describe_helps_names_the_counts_where_a_task_helps_after_the_fewest():
    from ssl_teach.compare import describe_helps

    h = {"up_to": None, "helps": {"4": False, "16": True, "64": True},
         "gain": {"4": 0.01, "16": 0.17, "64": 0.1}, "spread": {"4": 0.02, "16": 0.02, "64": 0.05}}
    line = describe_helps("rotation", h)
    assert "not beyond the spread at 4 labels per class, but at 16, 64" in line
    h["helps"] = {"4": False, "16": False, "64": False}
    assert "at any label count" in describe_helps("rotation", h)


def test_vary_trains_every_value_with_every_seed_and_adds_the_profiles_own(tiny_profile,
                                                                          tmp_path, capsys):
    from ssl_teach import cli
    from ssl_teach.vary import format_vary, parse_options, vary

    options = parse_options(["temperature=0.5", "group=2"])
    assert options == {"temperature": [0.5], "group": [2]}
    res = vary("simclr", options, train_seeds=(0, 1), progress=False)
    default = TINY.task("simclr").options()
    temps = res["runs"]["temperature"]
    assert [r["value"] for r in temps] == sorted([0.5, default["temperature"]])
    assert [r["default"] for r in temps] == [r["value"] == default["temperature"] for r in temps]
    for rows in res["runs"].values():
        for r in rows:
            assert len(r["probe"]["runs"]) == len(r["pretext"]["runs"]) == 2
            assert r["probe"]["runs"][0] != r["probe"]["runs"][1]  # two seeds, two networks
    # the profile's own setting is the same network whichever option is varied
    base_t = next(r for r in temps if r["default"])
    base_g = next(r for r in res["runs"]["group"] if r["default"])
    assert base_t["probe"] == base_g["probe"]
    group2 = next(r for r in res["runs"]["group"] if r["value"] == 2)
    assert group2["chance"] == pytest.approx(1 / 3)  # 2 images: 3 other views to choose from
    assert len(res["random"]["runs"]) == 2
    table = format_vary(res)
    assert "temperature" in table and "the profile's" in table
    with pytest.raises(ValueError, match="no option 'colour'"):
        vary("simclr", {"colour": [1]}, progress=False)
    with pytest.raises(ValueError, match="temperature"):
        vary("simclr", {"temperature": [0]}, progress=False)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_options(["temperature"])
    # the command line gives the same results (from the checkpoint cache) and writes them
    out = tmp_path / "vary.json"
    assert cli.main(["vary", "simclr", "--option", "temperature=0.5", "--option", "group=2",
                     "--train-seeds", "0,1", "--quiet", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["runs"] == json.loads(json.dumps(res["runs"]))
    assert "beyond the spread?" in capsys.readouterr().out
