"""Context encoders: masks, band and loss against loop references, the model, training."""

import pytest
import torch

from ssl_teach.models import build_backbone
from ssl_teach.pretext import inpainting as inp
from ssl_teach.train import TrainConfig, pretext_accuracy, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------- masks

def test_central_mask_hides_one_square_in_the_middle():
    hidden = inp.central_mask(2, 12, 10, 4)
    for r in range(12):
        for c in range(10):
            assert bool(hidden[1, 0, r, c]) == (4 <= r < 8 and 3 <= c < 7), (r, c)
    assert torch.equal(hidden[0], hidden[1])


def test_block_mask_is_the_union_of_squares_drawn_from_the_generator():
    n, h, w, side, k = 3, 20, 16, 5, 4
    hidden = inp.block_mask(n, h, w, side, k, generator=gen(1))
    g = gen(1)
    top = torch.randint(0, h - side + 1, (n, k), generator=g)
    left = torch.randint(0, w - side + 1, (n, k), generator=g)
    ref = torch.zeros(n, 1, h, w, dtype=torch.bool)
    for i in range(n):
        for b in range(k):
            t, le = int(top[i, b]), int(left[i, b])
            ref[i, 0, t:t + side, le:le + side] = True
    assert torch.equal(hidden, ref)
    assert int(hidden[0].sum()) <= k * side * side
    assert torch.equal(inp.block_mask(n, h, w, side, k, generator=gen(1)), hidden)


def test_band_is_the_seen_pixels_within_its_width_of_a_hidden_one():
    hidden = inp.block_mask(2, 14, 14, 3, 2, generator=gen(2))
    band = inp.band_around(hidden, 2)
    for i in range(2):
        spots = hidden[i, 0].nonzero().tolist()
        for r in range(14):
            for c in range(14):
                near = any(abs(r - a) <= 2 and abs(c - b) <= 2 for a, b in spots)
                assert bool(band[i, 0, r, c]) == (near and not hidden[i, 0, r, c]), (i, r, c)
    assert not inp.band_around(hidden, 0).any()


def test_task_sizes_follow_the_paper_at_64_pixels():
    task = inp.InpaintingTask()
    assert task.sides(64) == (32, 4)  # half the side hidden; 7/128 of the side is 3.5 -> 4 px
    assert task.sides(128) == (64, 7)  # the paper's 64 px hole and 7 px band
    blocks = inp.InpaintingTask(mask="blocks")
    assert blocks.sides(64)[0] == 16  # four squares of a quarter of the side: <= 1/4 of the area
    assert task.chance == pytest.approx(0.2 ** 3)


# ----------------------------------------------------------------- the batch and the loss

def test_batch_hides_the_region_and_marks_hidden_band_and_context():
    task = inp.InpaintingTask(mask="blocks", fill=0.25)
    images = (torch.rand(4, 3, 32, 32, generator=gen(3)) * 255).to(torch.uint8)
    inputs, targets = task.make_batch(images, generator=gen(4))
    hidden = task.hidden_mask(images, generator=gen(4))
    x = images.float() / 255
    assert torch.equal(inputs, torch.where(hidden, torch.full_like(x, 0.25), x))
    assert torch.equal(targets[:, :3], x)
    region = targets[:, 3:]
    assert torch.equal(region == inp.HIDDEN, hidden)
    assert torch.equal(region == inp.BAND, inp.band_around(hidden, task.sides(32)[1]))
    assert set(region.unique().tolist()) == {inp.CONTEXT, inp.HIDDEN, inp.BAND}
    assert torch.equal(task.probe_inputs(images), x)


def test_loss_and_hits_match_a_loop_over_pixels():
    task = inp.InpaintingTask(overlap_weight=10.0, tolerance=0.1)
    model = task.build_model(build_backbone(width=4), image_size=32)
    images = torch.rand(2, 3, 32, 32, generator=gen(5))
    _, targets = task.make_batch(images)
    out = images + 0.15 * torch.randn(images.shape, generator=gen(6))
    num = den = hits = hidden = 0.0
    for i in range(2):
        for r in range(32):
            for c in range(32):
                code = int(targets[i, 3, r, c])
                w = {inp.CONTEXT: 0.0, inp.HIDDEN: 1.0, inp.BAND: 10.0}[code]
                se = float(((out[i, :, r, c] - images[i, :, r, c]) ** 2).mean())
                num, den = num + w * se, den + w
                if code == inp.HIDDEN:
                    hidden += 1
                    hits += float((out[i, :, r, c] - images[i, :, r, c]).abs().max() <= 0.1)
    assert float(model.pretext_loss(out, targets)) == pytest.approx(num / den, rel=1e-5)
    assert float(model.pretext_hits(out, targets)) == pytest.approx(hits / hidden, rel=1e-6)
    assert 0 < hits < hidden


def test_channelwise_layer_mixes_positions_within_each_channel_only():
    layer = inp.ChannelwiseLinear(3, 4)
    x = torch.randn(2, 3, 2, 2, generator=gen(7))
    got = layer(x)
    for n in range(2):
        for c in range(3):
            ref = layer.weight[c] @ x[n, c].flatten() + layer.bias[c]
            assert torch.allclose(got[n, c].flatten(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="one image size"):
        layer(torch.randn(1, 3, 4, 4))


def test_model_paints_an_image_of_the_input_size_from_the_context_only():
    task = inp.InpaintingTask()
    for size in (32, 64, 28, 40):  # sides that do not halve evenly end in a resize
        model = task.build_model(build_backbone(width=4), image_size=size).eval()
        images = torch.rand(2, 3, size, size, generator=gen(8))
        assert model(images).shape == images.shape
        masked, painted, joined = task.paint(model, images)
        hidden = task.hidden_mask(images)
        assert painted.shape == joined.shape == images.shape
        assert torch.equal(joined[~hidden.expand_as(images)], images[~hidden.expand_as(images)])
        # the hidden pixels never reach the network: changing them changes nothing
        changed = torch.where(hidden, torch.rand(images.shape, generator=gen(9)), images)
        assert torch.equal(task.paint(model, changed)[1], painted)
    with pytest.raises(ValueError, match="at least 16 px"):
        task.build_model(build_backbone(width=4), image_size=15)


def test_diffusion_keeps_the_context_and_fills_a_ramp_with_the_ramp():
    ramp = torch.linspace(0, 1, 24).view(1, 1, 1, 24).expand(1, 3, 24, 24).contiguous()
    hidden = inp.central_mask(1, 24, 24, 10)
    masked = torch.where(hidden, torch.full_like(ramp, 0.5), ramp)
    filled = inp.diffuse_fill(masked, hidden, iterations=5000, tol=1e-7)
    assert torch.equal(filled[~hidden.expand_as(ramp)], ramp[~hidden.expand_as(ramp)])
    assert (filled - ramp).abs().max() < 1e-3  # a linear ramp is its own 3x3 mean
    flat = inp.diffuse_fill(torch.where(hidden, torch.zeros_like(ramp), torch.ones_like(ramp)),
                            hidden)
    assert flat.min() > 0.99  # one colour all round: the hole takes it


# ----------------------------------------------------------------- training

def test_training_lowers_the_loss_and_counts_painted_pixels(tiny_scenes):
    task = inp.InpaintingTask()
    config = TrainConfig(budget_samples=32 * 30, batch_size=32, width=8, depth=4, lr=0.05)
    trained = train(task, tiny_scenes, config, progress=False)
    loss, acc = trained.history["loss"], trained.history["accuracy"]
    assert sum(loss[-3:]) / 3 < 0.5 * sum(loss[:3]) / 3
    assert all(0 <= a <= 1 for a in acc)
    held_out = pretext_accuracy(trained, tiny_scenes, cache=False)
    assert task.chance < held_out <= 1
    again = train(task, tiny_scenes, config, progress=False)
    assert again.from_cache and torch.equal(
        again.model.decoder[0].weight, trained.model.decoder[0].weight)


@pytest.mark.parametrize("options, message", [
    ({"mask": "circle"}, "mask must be one of"), ({"hole": 1.0}, "hole and block"),
    ({"blocks": 0}, "blocks must be"), ({"overlap": 0.6}, "overlap"),
    ({"tolerance": 0}, "tolerance")])
def test_bad_settings_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        inp.InpaintingTask(**options)


def test_bad_input_gives_clear_errors():
    task = inp.InpaintingTask()
    with pytest.raises(ValueError, match="too small"):
        task.make_batch(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="bool mask"):
        task.masked(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))


def test_painter_widget_places_the_hole_and_compares_with_diffusion():
    from ssl_teach import widgets

    task = inp.InpaintingTask()
    model = task.build_model(build_backbone(width=4), image_size=32)
    images = (torch.rand(3, 3, 32, 32, generator=gen(10)) * 255).to(torch.uint8)
    painter = widgets.InpaintingPainter(model, task, images)
    assert int(painter.hidden().sum()) == 16 * 16  # the task's own hole to start with
    first = painter.network_error
    assert first > 0 and painter.diffusion_error > 0
    painter.set(index=2, side=6, top=30, left=0)  # sticks out at the bottom: moved inside
    hidden = painter.hidden()
    assert int(hidden.sum()) == 36 and bool(hidden[0, 0, 31, 0]) and bool(hidden[0, 0, 26, 5])
    image = images[2:3].float() / 255
    spot = hidden.expand_as(image)
    masked, _, joined = task.paint(model, images[2:3], hidden)
    assert painter.network_error == pytest.approx(
        float((joined[spot] - image[spot]).square().mean()), rel=1e-5)
    diffused = inp.diffuse_fill(masked, hidden)
    assert painter.diffusion_error == pytest.approx(
        float((diffused[spot] - image[spot]).square().mean()), rel=1e-5)
    assert "36 hidden pixels" in painter.status.value
    assert "<img" in widgets.static_html(painter.widget)
