"""Fine-tuning: the augmentation against a loop reference, one recipe whatever the initialisation,
a fixed step budget, choices made on validation only, determinism and the cache."""

import dataclasses

import pytest
import torch

from ssl_teach import finetune as ft
from ssl_teach.data import Dataset
from ssl_teach.finetune import (
    FinetuneConfig, augment, available_sizes, finetune, finetune_label_efficiency,
    pretraining_helps, sample_augmentation,
)
from ssl_teach.train import SupervisedTask, TrainConfig, train, untrained

TINY = FinetuneConfig(steps=12, batch_size=16, eval_every=4)


def colour_dataset(n_train=80, n_test=60, classes=4, size=16, seed=0) -> Dataset:
    """Images whose class is their colour (plus noise): learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(classes, 3, generator=g)

    def part(n):
        labels = torch.arange(n) % classes
        images = colours[labels].view(n, 3, 1, 1) + 0.15 * torch.randn(n, 3, size, size,
                                                                       generator=g)
        return (images.clamp(0, 1) * 255).to(torch.uint8), labels

    unlabeled, _ = part(32)
    train_x, train_y = part(n_train)
    test_x, test_y = part(n_test)
    return Dataset(name="colours", unlabeled=unlabeled, train_images=train_x,
                   train_labels=train_y, test_images=test_x, test_labels=test_y,
                   class_names=tuple(str(c) for c in range(classes)),
                   spec={"name": "colours", "seed": seed, "n_train": n_train})


@pytest.fixture
def colours():
    return colour_dataset()


@pytest.fixture
def scratch(colours):
    return untrained(SupervisedTask(num_classes=4), colours, TrainConfig(width=4, depth=2))


# --- augmentation ----------------------------------------------------------------------------


def augment_loop(images, params):
    """Straight from the definition: flip, zero-pad, crop at (dy, dx), one image at a time."""
    pad = params["pad"]
    out = []
    for img, flip, dy, dx in zip(images, params["flip"], params["dy"], params["dx"]):
        if flip:
            img = img.flip(-1)
        padded = torch.zeros(img.shape[0], img.shape[1] + 2 * pad, img.shape[2] + 2 * pad)
        padded[:, pad:pad + img.shape[1], pad:pad + img.shape[2]] = img
        out.append(padded[:, dy:dy + img.shape[1], dx:dx + img.shape[2]])
    return torch.stack(out)


def test_augmentation_matches_the_loop_reference(images):
    config = FinetuneConfig(translate=0.125)
    params = sample_augmentation(len(images), size=32, config=config,
                                 generator=torch.Generator().manual_seed(1))
    assert params["pad"] == 4
    assert params["flip"].any() and not params["flip"].all()
    assert params["dy"].min() >= 0 and params["dy"].max() <= 8
    assert torch.equal(augment(images, params), augment_loop(images, params))


def test_augmentation_without_shift_or_flip_is_the_identity(images):
    n = len(images)
    params = {"flip": torch.zeros(n, dtype=bool), "dy": torch.full((n,), 3),
              "dx": torch.full((n,), 3), "pad": 3}
    assert torch.equal(augment(images, params), images)
    flipped = augment(images, {**params, "flip": torch.ones(n, dtype=bool)})
    assert torch.equal(flipped, images.flip(-1))
    # shift right by one pixel: the left column becomes padding
    shifted = augment(images, {**params, "dx": torch.full((n,), 2)})
    assert torch.equal(shifted[..., 1:], images[..., :-1]) and (shifted[..., 0] == 0).all()


def test_augmentation_parameters_come_from_the_generator_only():
    config = FinetuneConfig()
    a = sample_augmentation(50, size=64, config=config, generator=torch.Generator().manual_seed(3))
    b = sample_augmentation(50, size=64, config=config, generator=torch.Generator().manual_seed(3))
    c = sample_augmentation(50, size=64, config=config, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in ("flip", "dy", "dx"))
    assert not torch.equal(a["dy"], c["dy"])
    off = sample_augmentation(50, size=64, config=dataclasses.replace(config, flip=False,
                                                                      translate=0.0),
                              generator=torch.Generator().manual_seed(3))
    assert not off["flip"].any() and off["pad"] == 0


# --- the recipe ------------------------------------------------------------------------------


def test_finetuning_learns_and_leaves_the_initial_weights_alone(colours, scratch):
    before = {k: v.clone() for k, v in scratch.model.state_dict().items()}
    res = finetune(scratch, colours, config=dataclasses.replace(TINY, steps=30), cache=False)
    assert res.accuracy > 0.9  # colour classes are easy: the recipe really trains
    after = scratch.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_step_budget_is_fixed_whatever_the_number_of_labels(colours, scratch):
    few = finetune(scratch, colours, torch.arange(16), config=TINY, cache=False)
    many = finetune(scratch, colours, None, config=TINY, cache=False)
    assert few.history["step"] == many.history["step"] == [4, 8, 12]
    assert few.n_train + few.n_val == 16 and many.n_train + many.n_val == 80
    assert few.n_val == 4  # one of each class's four
    assert many.n_val == 20  # a quarter of each class's 20 labelled images


def test_with_too_few_labels_nothing_is_held_out_and_the_last_step_is_kept(colours, scratch):
    idx = torch.arange(12)  # 3 images per class: fewer than the validation minimum
    res = finetune(scratch, colours, idx, config=TINY, cache=False)
    assert res.n_val == 0 and res.n_train == 12
    assert res.step == TINY.steps and res.val_accuracy is None
    assert res.history["val"] == [None, None, None] and len(res.history["loss"]) == 3


def test_changing_the_test_labels_changes_no_choice(colours, scratch):
    """Selection sees only validation images carved from the labelled training images."""
    shuffled = dataclasses.replace(
        colours, test_labels=colours.test_labels[torch.randperm(
            len(colours.test_labels), generator=torch.Generator().manual_seed(0))])
    a = finetune(scratch, colours, config=TINY, cache=False)
    b = finetune(scratch, shuffled, config=TINY, cache=False)
    assert a.step == b.step and a.history == b.history and a.val_accuracy == b.val_accuracy
    assert a.accuracy != b.accuracy  # the test labels only change what is reported


def test_runs_are_deterministic_from_the_seed(colours, scratch):
    a = finetune(scratch, colours, config=TINY, seed=1, cache=False)
    b = finetune(scratch, colours, config=TINY, seed=1, cache=False)
    c = finetune(scratch, colours, config=TINY, seed=2, cache=False)
    assert (a.accuracy, a.history) == (b.accuracy, b.history)
    assert a.history["loss"] != c.history["loss"]


def test_results_are_cached_under_the_whole_configuration(colours, scratch, private_cache):
    a = finetune(scratch, colours, config=TINY)
    again = finetune(scratch, colours, config=TINY)
    assert again.from_cache and not a.from_cache
    assert (again.accuracy, again.step, again.history) == (a.accuracy, a.step, a.history)
    assert len(list((private_cache / "finetune").glob("*.json"))) == 1
    finetune(scratch, colours, config=dataclasses.replace(TINY, lr=0.01))
    finetune(scratch, colours, torch.arange(40), config=TINY)
    finetune(scratch, colours, config=TINY, seed=5)
    assert len(list((private_cache / "finetune").glob("*.json"))) == 4


def test_a_run_starts_from_the_initial_backbone_and_a_fresh_seeded_head(colours):
    """Only the initialisation differs between rows: the backbone's weights (and BatchNorm
    statistics) are the given model's, the head is new: the probe's pooling grid, standardised
    inputs, one linear layer."""
    sup = train(SupervisedTask(num_classes=4), colours,
                TrainConfig(budget_samples=64, batch_size=32, width=4, depth=2),
                progress=False, cache=False)
    model = ft.initial_model(sup, 4, image_size=16, seed=0)
    start, given = model.backbone.state_dict(), sup.backbone.state_dict()
    assert all(torch.equal(start[k], given[k]) for k in given)
    assert model.backbone is not sup.backbone  # a copy: fine-tuning never changes the given
    pool, _, norm, linear = model.head
    assert pool.output_size == 4  # 8 channels on a 4x4 map: the probe keeps the whole map
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine
    assert linear.in_features == 8 * 4 * 4 and linear.out_features == 4
    again = ft.initial_model(sup, 4, image_size=16, seed=0).head[-1].weight
    other = ft.initial_model(sup, 4, image_size=16, seed=1).head[-1].weight
    assert torch.equal(linear.weight, again) and not torch.equal(linear.weight, other)
    out = model.eval()(torch.rand(3, 3, 16, 16))
    assert out.shape == (3, 4)
    flat = ft.initial_model(sup, 4, image_size=16,
                            config=FinetuneConfig(head_grid=1, head_norm=False))
    assert flat.head[0].output_size == 1 and isinstance(flat.head[2], torch.nn.Identity)


def test_evaluation_uses_running_statistics(colours, scratch):
    model = scratch.model.train()
    kw = {"prepare": lambda x: x, "device": torch.device("cpu")}
    whole = ft.evaluate(model, colours.test_images, colours.test_labels, batch_size=60, **kw)
    ones = ft.evaluate(model, colours.test_images, colours.test_labels, batch_size=1, **kw)
    assert whole == ones and model.training  # eval mode inside, the caller's mode restored


def test_label_efficiency_summarises_one_run_per_subset(colours, scratch):
    out = finetune_label_efficiency(scratch, colours, sizes=(4, "all"), seeds=(0, 1),
                                    config=TINY, cache=False)
    assert set(out) == {"4", "all"}
    for v in out.values():
        assert len(v["runs"]) == len(v["steps"]) == len(v["val"]) == 2
        assert v["mean"] == pytest.approx(sum(v["runs"]) / 2) and v["std"] >= 0


def test_sizes_the_data_cannot_serve_are_set_aside(colours):
    assert available_sizes(colours, [4, 16, 20, 21, "all"]) == ([4, 16, 20, "all"], [21])


def test_pretraining_helps_up_to_the_last_count_where_the_gain_beats_the_spread():
    def row(*means, std=0.01):
        return {s: {"mean": m, "std": std} for s, m in zip(("4", "16", "64", "all"), means)}

    finetuned = {"random": row(0.2, 0.3, 0.6, 0.9), "good": row(0.5, 0.6, 0.61, 0.95),
                 "bad": row(0.21, 0.3, 0.5, 0.9), "always": row(0.5, 0.6, 0.7, 0.95)}
    helps = pretraining_helps(finetuned, ["4", "16", "64", "all"])
    assert set(helps) == {"good", "bad", "always"}
    assert helps["good"]["up_to"] == 16  # +1 point at 64 is within the spread of ~1.4
    assert helps["good"]["helps"] == {"4": True, "16": True, "64": False, "all": True}
    assert helps["bad"]["up_to"] is None and helps["always"]["up_to"] == "all"
    assert helps["good"]["gain"]["4"] == pytest.approx(0.3)
    assert helps["good"]["spread"]["4"] == pytest.approx(0.01 * 2 ** 0.5)


def test_bad_input_is_a_clear_error(colours, scratch):
    with pytest.raises(ValueError, match="empty subset"):
        finetune(scratch, colours, torch.zeros(0, dtype=torch.long), config=TINY)
    with pytest.raises(ValueError, match="steps"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="translate"):
        FinetuneConfig(translate=0.5)
    with pytest.raises(ValueError, match="labels per class"):
        finetune_label_efficiency(scratch, colours, sizes=(0,), config=TINY)


def test_every_profile_has_a_recipe():
    from ssl_teach.profiles import PROFILES

    for name, profile in PROFILES.items():
        assert ft.recipe(profile) is ft.RECIPES[name] is ft.recipe(name)


def test_run_reports_fine_tuning_of_the_task_and_from_scratch(monkeypatch):
    from ssl_teach.cli import format_results
    from ssl_teach.experiment import run
    from ssl_teach.profiles import Profile

    monkeypatch.setitem(ft.RECIPES, "quick", TINY)
    tiny = Profile(name="quick", image_size=32, n_unlabeled=128, n_train=200, n_test=50,
                   train=TrainConfig(budget_samples=128, batch_size=64, width=8, depth=3))
    res = run("rotation", profile=tiny, progress=False, finetune_seeds=(0, 1))
    down = res["downstream"]
    assert set(down["finetune"]) == {"rotation", "random"}
    for table in down["finetune"].values():
        assert set(table) == {"4", "16"}  # the default label counts
        for v in table.values():
            assert set(v) >= {"mean", "std", "runs"} and len(v["runs"]) == 2
    assert set(down["pretraining_helps"]) == {"rotation"}
    assert down["recipe"] == dataclasses.asdict(TINY) and down["skipped_sizes"] == []
    assert res["probe"]["best_block"]["rotation"] == max(res["probe"]["val"]["rotation"],
                                                          key=res["probe"]["val"]["rotation"].get)
    text = format_results(res)
    assert "fine-tuned, all layers" in text and "random = scratch" in text
    assert "beats from scratch" in text


def test_downstream_sets_aside_label_counts_the_data_cannot_serve(colours, scratch, monkeypatch):
    monkeypatch.setitem(ft.RECIPES, "quick", TINY)
    down = ft.finetune_downstream({"random": scratch}, colours, "quick", sizes=(4, 21),
                                  seeds=(0,))
    assert down["skipped_sizes"] == ["21"]  # 20 labelled images per class
    assert set(down["finetune"]["random"]) == {"4"} and down["pretraining_helps"] == {}
    none = ft.finetune_downstream({"random": scratch}, colours, "quick", sizes=())
    assert none["finetune"] == {} and none["skipped_sizes"] == []


def test_the_recipe_follows_the_profile_precision():
    from ssl_teach.profiles import PROFILES

    quick = PROFILES["quick"]
    assert ft.recipe(quick).precision == quick.precision
    forced = dataclasses.replace(quick, precision="float32")
    assert ft.recipe(forced) == dataclasses.replace(ft.RECIPES["quick"], precision="float32")
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="half")


def test_format_downstream_states_gain_spread_and_verdict():
    down = {"finetune": {"rotation": {"16": {"mean": 0.4, "std": 0.05, "runs": [0.4] * 3}},
                         "random": {"16": {"mean": 0.2, "std": 0.01, "runs": [0.2] * 3}}},
            "recipe": dataclasses.asdict(TINY), "seeds": [0, 1, 2], "skipped_sizes": []}
    down["pretraining_helps"] = ft.pretraining_helps(down["finetune"], ["16"])
    text = ft.format_downstream(down)
    assert "random = scratch" in text and "+20.0 ± 5.1 points at 16" in text
    assert "up to 16 labels per class" in text
    assert ft.format_downstream({"finetune": {}}) == ""
    # a gain beyond the spread at 16 but not at 4 is said as it is, not as "no label count"
    down["finetune"]["rotation"]["4"] = {"mean": 0.13, "std": 0.02, "runs": [0.13] * 3}
    down["finetune"]["random"]["4"] = {"mean": 0.12, "std": 0.01, "runs": [0.12] * 3}
    for table in down["finetune"].values():
        table["4"], table["16"] = table.pop("4"), table.pop("16")  # in label-count order
    down["pretraining_helps"] = ft.pretraining_helps(down["finetune"], ["4", "16"])
    text = ft.format_downstream(down)
    assert "more than the spread at 16 labels per class, but not at 4, the fewest" in text
    down["finetune"]["rotation"]["16"]["mean"] = 0.2
    down["pretraining_helps"] = ft.pretraining_helps(down["finetune"], ["4", "16"])
    assert "at no label count measured" in ft.format_downstream(down)
