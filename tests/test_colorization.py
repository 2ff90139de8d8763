"""Colorization: Lab against published values, the ab bins, rebalancing, the loss in the loop."""

import pytest
import torch

from ssl_teach.models import build_backbone
from ssl_teach.pretext import colorization as col
from ssl_teach.train import TrainConfig, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def colours(rgb):
    """A list of RGB triples as a batch of 1 x k images: (1, 3, k, 1)."""
    return torch.tensor(rgb, dtype=torch.float32).T.reshape(1, 3, -1, 1)


# ----------------------------------------------------------------- colour spaces

def test_lab_of_the_primaries_and_white_matches_the_published_values():
    # CIE Lab (D65) of sRGB white, black and the primaries, as colour references tabulate them
    rgb = [(1, 1, 1), (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    lab = [(100.0, 0.0, 0.0), (0.0, 0.0, 0.0), (53.24, 80.09, 67.20),
           (87.73, -86.18, 83.18), (32.30, 79.19, -107.86)]
    got = col.rgb_to_lab(colours(rgb))[0, :, :, 0].T
    assert torch.allclose(got, torch.tensor(lab), atol=0.02), got


def test_lab_round_trip_gives_the_image_back():
    images = torch.rand(4, 3, 9, 7, generator=gen(1))
    back = col.lab_to_rgb(col.rgb_to_lab(images))
    assert torch.allclose(back, images, atol=2e-4)


def test_gray_pixels_have_no_colour():
    gray = torch.rand(3, 1, 5, 5, generator=gen(2)).expand(3, 3, 5, 5)
    ab = col.rgb_to_lab(gray)[:, 1:]
    assert ab.abs().max() < 1e-3


# ----------------------------------------------------------------- bins and targets

def test_every_srgb_colour_falls_in_a_bin_and_bins_sit_on_the_grid():
    centres = col.ab_bins(10)
    assert len(set(map(tuple, centres.tolist()))) == len(centres)
    assert torch.equal((centres + col.AB_RANGE - 5) % 10, torch.zeros_like(centres))
    ab = col.rgb_to_lab(torch.rand(1, 3, 20_000, 1, generator=gen(3)))[0, 1:, :, 0].T
    squares = set(col.bin_of(ab, 10).tolist())
    assert squares <= set(col.bin_of(centres, 10).tolist())
    # the grey axis and the corners of the RGB cube are classes
    assert len(squares) > 0.8 * len(centres)


def test_quantise_is_the_nearest_bin_centre():
    images = torch.rand(2, 3, 6, 6, generator=gen(4))
    ab = col.rgb_to_lab(images)[:, 1:]
    got = col.quantise(ab, 10)
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.tensor([min(range(len(col.ab_bins(10))),
                                key=lambda q: float(((col.ab_bins(10)[q] - p) ** 2).sum()))
                            for p in flat])
    assert torch.equal(got.flatten(), nearest)


def test_rebalancing_weights_rare_colours_up_and_averages_to_one():
    centres = col.ab_bins(10)
    counts = torch.ones(len(centres))
    grey = int(col.quantise(torch.zeros(1, 2, 1, 1), 10))
    counts[grey] = 10_000  # unsaturated colours dominate natural images
    w = col.rebalance_weights(counts, centres, rebalance=0.5)
    d2 = torch.cdist(centres.double(), centres.double()) ** 2
    smooth = torch.exp(-d2 / (2 * col.SIGMA ** 2)) @ (counts.double() / counts.sum())
    smooth /= smooth.sum()
    assert float((smooth * w.double()).sum()) == pytest.approx(1.0, rel=1e-5)
    assert w[grey] < w.median() / 10
    assert torch.allclose(col.rebalance_weights(counts, centres, rebalance=1.0),
                          torch.ones(len(centres)), atol=1e-5)
    with pytest.raises(ValueError, match="rebalance"):
        col.rebalance_weights(counts, centres, rebalance=1.5)


def test_annealed_mean_goes_from_the_mean_to_the_mode():
    centres = torch.tensor([[0.0, 0.0], [40.0, 0.0], [0.0, -30.0]])
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).view(1, 3, 1, 1)
    mean = col.annealed_mean(logits, centres, temperature=1.0)[0, :, 0, 0]
    assert torch.allclose(mean, torch.tensor([12.0, -6.0]), atol=1e-4)
    mode = col.annealed_mean(logits, centres, temperature=0.01)[0, :, 0, 0]
    assert torch.allclose(mode, centres[0], atol=1e-3)


# ----------------------------------------------------------------- the task

def test_task_makes_lightness_inputs_and_coarse_colour_targets():
    task = col.ColorizationTask()
    assert task.stride == 8 and task.num_classes == len(col.ab_bins(10))
    assert task.chance == 1 / task.num_classes and len(task.class_names) == task.num_classes
    images = (torch.rand(3, 3, 32, 32, generator=gen(5)) * 255).to(torch.uint8)
    inputs, targets = task.make_batch(images, generator=gen(6))
    assert inputs.shape == (3, 1, 32, 32) and 0 <= inputs.min() and inputs.max() <= 1
    assert targets.shape == (3, 4, 4) and targets.dtype == torch.long
    lab = col.rgb_to_lab(images.float() / 255)
    assert torch.allclose(inputs, lab[:, :1] / 100, atol=1e-6)
    ab = torch.nn.functional.avg_pool2d(lab[:, 1:], 8)
    assert torch.equal(targets, col.quantise(ab, 10))
    assert torch.equal(task.probe_inputs(images), inputs)


def test_model_predicts_a_distribution_per_output_pixel():
    task = col.ColorizationTask(hidden=8)
    model = task.build_model(build_backbone(in_channels=1, width=4))
    logits = model(torch.rand(2, 1, 64, 64, generator=gen(7)))
    assert logits.shape == (2, task.num_classes, 8, 8)
    out = task.colourise(model, torch.rand(2, 3, 64, 64, generator=gen(8)))
    assert out.shape == (2, 3, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_training_uses_the_rebalanced_loss_and_the_checkpoint_keeps_the_weights(tiny_scenes,
                                                                               tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("SSL_TEACH_CACHE", str(tmp_path))
    task = col.ColorizationTask(hidden=8, prior_images=100)
    config = TrainConfig(budget_samples=32 * 10, batch_size=32, width=4, depth=3, lr=0.05)
    trained = train(task, tiny_scenes, config, progress=False)
    weights = trained.model.class_weights
    assert not torch.allclose(weights, torch.ones_like(weights))  # set from the images
    assert trained.model.backbone.in_channels == 1
    inputs, targets = task.make_batch(tiny_scenes.unlabeled[:16])
    trained.model.eval()
    with torch.no_grad():
        logits = trained.model(inputs)
        plain = torch.nn.functional.cross_entropy(logits, targets)
        rebalanced = trained.model.pretext_loss(logits, targets)
    assert float(rebalanced) != pytest.approx(float(plain), rel=1e-3)
    again = train(task, tiny_scenes, config, progress=False)
    assert again.from_cache and torch.equal(again.model.class_weights, weights)


def test_bad_input_gives_clear_errors():
    task = col.ColorizationTask()
    with pytest.raises(ValueError, match="needs RGB images"):
        task.make_batch(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="needs RGB images"):
        task.probe_inputs(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="stride must be"):
        col.ColorizationTask(stride=3)
    with pytest.raises(ValueError, match="grid"):
        col.ColorizationTask(grid=0)
    with pytest.raises(ValueError, match="lightness only"):
        task.build_model(build_backbone(in_channels=3, width=4))
    with pytest.raises(ValueError, match="Lab images"):
        col.lab_to_rgb(torch.rand(2, 2, 4, 4))


def test_recolourer_widget_reports_the_bin_accuracy_of_the_chosen_image():
    from ssl_teach import widgets

    task = col.ColorizationTask(hidden=8)
    model = task.build_model(build_backbone(in_channels=1, width=4))
    images = (torch.rand(3, 3, 32, 32, generator=gen(11)) * 255).to(torch.uint8)
    recolourer = widgets.Recolourer(model, task, images)
    recolourer.set(index=1, temperature=0.2)
    inputs, targets = task.make_batch(images[1:2])
    model.eval()
    with torch.no_grad():
        expected = float((model(inputs).argmax(1) == targets).float().mean())
    assert recolourer.bin_accuracy == pytest.approx(expected)
    assert torch.allclose(recolourer.coloured(),
                          task.colourise(model, images[1:2], temperature=0.2)[0])
    assert "temperature 0.20" in recolourer.status.value
    assert "<img" in widgets.static_html(recolourer.widget)
