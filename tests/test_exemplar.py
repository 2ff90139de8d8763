"""Exemplar-CNN: seed patches where gradients are strong, the paper's transformation families."""

import colorsys
import math

import pytest
import torch

from ssl_teach.data import to_float
from ssl_teach.models import build_backbone
from ssl_teach.pretext import exemplar as ex
from ssl_teach.pretext import get_task
from ssl_teach.train import TrainConfig, predict, train

from loop_references import bilinear


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_params(n, *, patch_size=8, channels=3, seed=0):
    return ex.sample_params(n, patch_size=patch_size, channels=channels, generator=gen(seed))


# ----------------------------------------------------------------- slow per-sample references

def bilinear_loop(image, x, y):
    """Bilinear value of image (C, H, W) at pixel coordinates (x, y), pixel centres at
    integers; the point must lie inside the image."""
    h, w = image.shape[-2:]
    assert -0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5
    return bilinear(image, x, y)


def geometry_loop(image, shift, scale, angle, patch_size):
    """Straight from the definition: output pixel u (from the patch centre) shows the content
    at p = R^-1 (u - shift) / scale (from the image centre), R an anticlockwise turn on
    screen (rows grow downwards)."""
    c, h, w = image.shape
    t = math.radians(angle)
    out = torch.empty(c, patch_size, patch_size)
    for i in range(patch_size):
        for j in range(patch_size):
            ux, uy = j + 0.5 - patch_size / 2 - shift[0], i + 0.5 - patch_size / 2 - shift[1]
            px = (math.cos(t) * ux - math.sin(t) * uy) / scale
            py = (math.sin(t) * ux + math.cos(t) * uy) / scale
            out[:, i, j] = bilinear_loop(image, px + w / 2 - 0.5, py + h / 2 - 0.5)
    return out


def contrast_loop(image, factors, mean, comps):
    """Per pixel: project on each principal component, scale, project back, clamp."""
    out = torch.empty_like(image)
    for i in range(image.shape[1]):
        for j in range(image.shape[2]):
            centred = image[:, i, j].double() - mean.double()
            value = mean.double().clone()
            for k in range(len(factors)):
                value += factors[k] * (comps[k].double() @ centred) * comps[k].double()
            out[:, i, j] = value.clamp(0, 1).float()
    return out


def hsv_loop(image, p, n):
    """Per pixel with Python's colorsys: S and V to a power, times a factor, plus a shift
    (clamped), hue shifted around the circle."""
    out = torch.empty_like(image)
    for i in range(image.shape[1]):
        for j in range(image.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*image[:, i, j].tolist())
            h = (h + float(p["hue_shift"][n])) % 1.0
            s = min(max(s ** float(p["sat_power"][n]) * float(p["sat_factor"][n])
                        + float(p["sat_shift"][n]), 0.0), 1.0)
            v = min(max(v ** float(p["val_power"][n]) * float(p["val_factor"][n])
                        + float(p["val_shift"][n]), 0.0), 1.0)
            out[:, i, j] = torch.tensor(colorsys.hsv_to_rgb(h, s, v))
    return out


# ----------------------------------------------------------------- each family vs its loop

def test_geometry_matches_the_per_pixel_loop():
    # a wide margin (window 32 for an 8-pixel patch) keeps every sample point inside the image
    windows = torch.rand(6, 3, 32, 32, generator=gen(1))
    p = random_params(6, patch_size=8)
    out = ex.transform_geometry(windows, p, patch_size=8)
    assert out.shape == (6, 3, 8, 8)
    for n in range(6):
        ref = geometry_loop(windows[n], p["shift"][n].tolist(), float(p["scale"][n]),
                            float(p["angle"][n]), 8)
        assert torch.allclose(out[n], ref, atol=1e-4)


def test_positive_angles_turn_anticlockwise_and_positive_shifts_move_right_and_down():
    dot = torch.zeros(1, 1, 33, 33)
    dot[0, 0, 16, 26] = 1  # ten pixels right of the centre
    p = ex.identity_params(1, channels=1)
    p["angle"] = torch.tensor([90.0])
    turned = ex.transform_geometry(dot, p, patch_size=33)
    assert divmod(int(turned.flatten().argmax()), 33) == (6, 16)  # now ten pixels up
    p = ex.identity_params(1, channels=1)
    p["shift"] = torch.tensor([[-3.0, 2.0]])
    moved = ex.transform_geometry(dot, p, patch_size=33)
    assert divmod(int(moved.flatten().argmax()), 33) == (18, 23)


def test_principal_component_contrast_matches_the_per_pixel_loop():
    images = torch.rand(4, 3, 5, 5, generator=gen(2))
    mean, comps = ex.colour_pca(torch.rand(10, 3, 8, 8, generator=gen(3)))
    factors = random_params(4)["contrast"]
    out = ex.scale_principal_components(images, factors, mean, comps)
    for n in range(4):
        assert torch.allclose(out[n], contrast_loop(images[n], factors[n], mean, comps),
                              atol=1e-5)


def test_colour_pca_gives_orthonormal_components_strongest_first():
    images = torch.rand(20, 3, 8, 8, generator=gen(4)) * torch.tensor([1.0, 0.5, 0.1]).view(
        1, 3, 1, 1)
    mean, comps = ex.colour_pca(images)
    assert torch.allclose(comps @ comps.T, torch.eye(3), atol=1e-5)
    assert torch.allclose(mean, to_float(images).mean((0, 2, 3)), atol=1e-5)
    assert comps[0].abs().argmax() == 0  # red varies most in these images
    variances = [((to_float(images) - mean.view(1, 3, 1, 1)) * c.view(1, 3, 1, 1)).sum(1).var()
                 for c in comps]
    assert variances[0] > variances[1] > variances[2]


def test_hsv_changes_match_colorsys_per_pixel():
    images = torch.rand(5, 3, 4, 4, generator=gen(5))
    p = random_params(5)
    out = ex.adjust_hsv(images, p)
    for n in range(5):
        assert torch.allclose(out[n], hsv_loop(images[n], p, n), atol=1e-5)


def test_rgb_hsv_conversion_matches_colorsys_and_round_trips():
    images = torch.rand(3, 3, 4, 4, generator=gen(6))
    images[0, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # gray: hue and saturation 0
    images[0, :, 0, 1] = 0.0  # black
    hsv = ex.rgb_to_hsv(images)
    for n in range(3):
        for i in range(4):
            for j in range(4):
                ref = colorsys.rgb_to_hsv(*images[n, :, i, j].tolist())
                assert torch.allclose(hsv[n, :, i, j], torch.tensor(ref), atol=1e-5)
    assert torch.allclose(ex.hsv_to_rgb(hsv), images, atol=1e-5)


# ----------------------------------------------------------------- identities and ranges

def test_identity_parameters_give_the_central_patch_back():
    windows = torch.rand(4, 3, 48, 48, generator=gen(7))
    mean, comps = ex.colour_pca(windows)
    out = ex.apply(windows, ex.identity_params(4), patch_size=32, mean=mean, components=comps)
    assert torch.allclose(out, windows[..., 8:40, 8:40], atol=1e-5)


def test_switched_off_families_draw_identity_parameters():
    p = ex.sample_params(50, patch_size=32, families=("rotation", "hue"), generator=gen(8))
    ident = ex.identity_params(50)
    for key in p:
        same = torch.equal(p[key], ident[key])
        assert same == (key not in ("angle", "hue_shift")), key
    task = get_task("exemplar", num_classes=4, rotation=False, hue=False)
    assert task.families == ("translation", "scale", "contrast", "saturation_value")
    with pytest.raises(ValueError, match="unknown transformation families"):
        ex.sample_params(2, patch_size=32, families=("blur",), generator=gen(0))


def test_each_family_alone_changes_only_what_it_should():
    windows = torch.rand(8, 3, 48, 48, generator=gen(9))
    centre = windows[..., 8:40, 8:40]
    mean, comps = ex.colour_pca(windows)
    for family in ex.FAMILIES:
        p = ex.sample_params(8, patch_size=32, families=(family,), generator=gen(10))
        out = ex.apply(windows, p, patch_size=32, mean=mean, components=comps)
        assert not torch.allclose(out, centre, atol=1e-3), family
        if family == "hue":  # a hue shift keeps saturation and value
            assert torch.allclose(ex.rgb_to_hsv(out)[:, 1:], ex.rgb_to_hsv(centre)[:, 1:],
                                  atol=1e-4)


def test_parameters_stay_in_the_papers_ranges_and_fill_them():
    p = ex.sample_params(20_000, patch_size=32, generator=gen(11))
    ranges = {"shift": (-0.2 * 32, 0.2 * 32), "scale": (0.7, 1.4), "angle": (-20, 20),
              "contrast": (0.5, 2.0), "sat_power": (0.25, 4.0), "val_power": (0.25, 4.0),
              "sat_factor": (0.7, 1.4), "val_factor": (0.7, 1.4), "sat_shift": (-0.1, 0.1),
              "val_shift": (-0.1, 0.1), "hue_shift": (-0.1, 0.1)}
    assert set(ranges) == set(p)
    for key, (low, high) in ranges.items():
        values = p[key].flatten()
        assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6, key
        span = high - low
        assert values.min() < low + 0.01 * span and values.max() > high - 0.01 * span, key
    # multiplicative factors are log-uniform: as many below 1 as above
    for key in ("scale", "contrast", "sat_power", "val_factor"):
        below = (p[key] < 1).float().mean().item()
        assert abs(below - 0.5) < 0.02, key
    assert p["contrast"].shape == (20_000, 3)


def test_parameters_come_from_the_generator_only():
    a = random_params(5, seed=3)
    torch.manual_seed(1234)  # the global state must not matter
    b = random_params(5, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extreme_parameters_give_no_nans():
    images = torch.rand(6, 3, 48, 48, generator=gen(12))
    images[0] = 0.0  # black
    images[1] = 1.0  # white
    images[2, 0] = -0.01  # slightly out of range (after interpolation round-off)
    images[3] = 1.01
    mean, comps = ex.colour_pca(images.clamp(0, 1))
    for power, factor, shift in ((0.25, 0.7, -0.1), (4.0, 1.4, 0.1), (0.25, 1.4, 0.1)):
        p = ex.identity_params(6)
        p.update(sat_power=torch.full((6,), power), val_power=torch.full((6,), power),
                 sat_factor=torch.full((6,), factor), val_factor=torch.full((6,), factor),
                 sat_shift=torch.full((6,), shift), val_shift=torch.full((6,), shift),
                 contrast=torch.full((6, 3), 2.0), scale=torch.full((6,), 0.7),
                 angle=torch.full((6,), 20.0), shift=torch.full((6, 2), 6.4),
                 hue_shift=torch.full((6,), -0.1))
        out = ex.apply(images, p, patch_size=32, mean=mean, components=comps)
        assert torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------- seed patches

def half_textured_image(size=64, seed=0):
    """Left half flat gray, right half random texture."""
    image = torch.full((1, 3, size, size), 0.5)
    image[..., size // 2:] = torch.rand(1, 3, size, size // 2, generator=gen(seed))
    return image


def test_patch_scores_are_the_mean_squared_gradient_of_each_patch():
    images = torch.rand(3, 3, 20, 20, generator=gen(13))
    scores = ex.patch_scores(images, patch_size=8, context=2)
    mag2 = ex.gradient_magnitude(images).pow(2)
    assert scores.shape == (3, 20 - 8 - 4 + 1, 20 - 8 - 4 + 1)
    for n, i, j in ((0, 0, 0), (1, 3, 5), (2, 8, 8)):
        ref = mag2[n, 2 + i:2 + i + 8, 2 + j:2 + j + 8].mean()
        assert torch.allclose(scores[n, i, j], ref, rtol=1e-4)


def test_seed_sampler_prefers_textured_regions():
    image = half_textured_image()
    images = image.expand(400, -1, -1, -1)
    _, origins = ex.extract_seeds(images, num_seeds=400, patch_size=16, context=0,
                                  generator=gen(14))
    centre_col = origins[:, 2].float() + 8
    textured = (centre_col > 32).float().mean().item()
    # uniform sampling would put about half of the patch centres on the textured side;
    # weighting by the share of textured pixels in each patch gives about 0.89
    assert textured > 0.8
    # a patch wholly on the flat half (away from the edge column) has zero probability
    assert (origins[:, 2] + 16 <= 31).sum() == 0


def test_seeds_come_from_different_images_with_their_context():
    images = (torch.rand(30, 3, 64, 64, generator=gen(15)) * 255).to(torch.uint8)
    windows, origins = ex.extract_seeds(images, num_seeds=30, patch_size=32, context=8,
                                        generator=gen(16))
    assert windows.shape == (30, 3, 48, 48) and windows.dtype == torch.uint8
    assert len(set(origins[:, 0].tolist())) == 30
    for w, (n, top, left, side) in zip(windows, origins.tolist()):
        assert side == 32  # scale 1: the seed patch is cut as it is
        assert 8 <= top <= 64 - 32 - 8 and 8 <= left <= 64 - 32 - 8
        assert torch.equal(w, images[n, :, top - 8:top + 40, left - 8:left + 40])


def resize_loop(region, size):
    """Reference: one region (C, R, R) resized to size x size by the same antialiased bilinear
    interpolation, on its own, rounded back to bytes."""
    out = torch.nn.functional.interpolate(region[None].float() / 255, size=(size, size),
                                          mode="bilinear", antialias=True, align_corners=False)
    return (out[0] * 255).round().clamp(0, 255).to(torch.uint8)


def test_seeds_are_drawn_at_several_scales_with_their_context():
    # the paper samples its seeds "at varying positions and scales"
    images = (torch.rand(60, 3, 96, 96, generator=gen(30)) * 255).to(torch.uint8)
    scales = (0.5, 0.75, 1.0)
    windows, origins = ex.extract_seeds(images, num_seeds=60, patch_size=32, context=25,
                                        scales=scales, generator=gen(31))
    assert windows.shape == (60, 3, 82, 82) and windows.dtype == torch.uint8
    sides = {s: ex.seed_geometry(s, patch_size=32, context=25) for s in scales}
    assert sides == {0.5: (16, 12, 40), 0.75: (24, 19, 62), 1.0: (32, 25, 82)}
    assert set(origins[:, 3].tolist()) == {16, 24, 32}  # every scale is drawn
    for w, (n, top, left, side) in zip(windows, origins.tolist()):
        patch, margin, region = next(g for g in sides.values() if g[0] == side)
        assert top - margin >= 0 and left - margin >= 0  # the context is real image
        assert top + patch + margin <= 96 and left + patch + margin <= 96
        cut = images[n, :, top - margin:top - margin + region, left - margin:left - margin + region]
        assert torch.equal(w, resize_loop(cut, 82) if region != 82 else cut)


def test_the_task_cuts_seeds_with_the_context_their_transformations_need(tiny_scenes):
    task = get_task("exemplar", num_classes=40, patch_size=16)
    assert task.context == ex.required_context(16) == 13 and task.window_size == 42
    assert len(set(task.seed_scales)) >= 2
    windows, origins = task.seeds(tiny_scenes)
    assert windows.shape == (40, 3, 42, 42)
    assert len(set(origins[:, 3].tolist())) >= 2  # seeds of several sizes
    default = get_task("exemplar")
    assert default.context == 25 and default.window_size == 82
    assert default.min_image_size <= 64  # the profiles' image size
    with pytest.raises(ValueError, match="context=8 is too small.*context >= 25"):
        get_task("exemplar", context=8)
    # without the geometric families no context is needed
    flat = get_task("exemplar", translation=False, scale=False, rotation=False)
    assert flat.context == 0 and flat.window_size == 32
    with pytest.raises(ValueError, match="seed_scales"):
        get_task("exemplar", seed_scales=())
    with pytest.raises(ValueError, match="use smaller seed scales"):
        ex.extract_seeds(torch.zeros(4, 3, 64, 64), num_seeds=2, patch_size=32, context=25,
                         generator=gen(0))


def farthest_sample(params, *, patch_size):
    """Reference: the farthest point (along either axis, in pixels from the window's centre)
    that any output pixel centre of any sample reads, from the definition p = R^-1 (u - s) / z,
    one sample and one patch corner at a time."""
    far = 0.0
    half = patch_size / 2 - 0.5
    for n in range(len(params["scale"])):
        t = math.radians(float(params["angle"][n]))
        for ux in (-half, half):
            for uy in (-half, half):
                x, y = ux - float(params["shift"][n, 0]), uy - float(params["shift"][n, 1])
                px = (math.cos(t) * x - math.sin(t) * y) / float(params["scale"][n])
                py = (math.sin(t) * x + math.cos(t) * y) / float(params["scale"][n])
                far = max(far, abs(px), abs(py))
    return far


@pytest.mark.parametrize("patch_size", [16, 32])
def test_the_largest_transformation_stays_inside_the_window(patch_size):
    # the worst cases: the largest shift, the smallest zoom and the largest turn, every sign
    signs = torch.tensor([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)],
                         dtype=torch.float32)
    n = len(signs)
    params = ex.identity_params(n)
    shift = ex.TRANSLATION * patch_size
    params.update(shift=signs[:, :2] * shift, scale=torch.full((n,), ex.SCALE[0]),
                  angle=signs[:, 2] * ex.ROTATION)
    reach = farthest_sample(params, patch_size=patch_size)
    assert reach == pytest.approx(ex.transformation_reach(patch_size), abs=1e-4)
    m = ex.required_context(patch_size)
    side = patch_size + 2 * m
    assert reach <= side / 2 - 0.5 < reach + 1  # the outermost pixel centre holds it, tightly
    # what the network is trained on: 100,000 random transformations, none reads padding
    for p in (params, ex.sample_params(100_000, patch_size=patch_size, generator=gen(40))):
        grid = ex.sampling_grid(ex.affine_matrices(p, patch_size=patch_size, height=side,
                                                   width=side), size=patch_size)
        assert grid.abs().max() <= 1 - 1 / side + 1e-5  # inside the outermost pixel centres
    # one pixel less of context, and the extreme transformations would read padding
    small = side - 2
    grid = ex.sampling_grid(ex.affine_matrices(params, patch_size=patch_size, height=small,
                                               width=small), size=patch_size)
    assert grid.abs().max() > 1 - 1 / small


def test_training_samples_read_no_padding(tiny_scenes):
    # a transformed sample equals the same transformation of a window with a far larger margin
    # of the same image: only real image content was read
    task = get_task("exemplar", num_classes=8, patch_size=16, seed_scales=(1.0,))
    images = torch.rand(8, 3, 80, 80, generator=gen(41))
    g = gen(42)
    windows, origins = ex.extract_seeds(images, num_seeds=8, patch_size=16,
                                        context=task.context, scales=(1.0,), generator=g)
    params = ex.sample_params(8, patch_size=16, families=("translation", "scale", "rotation"),
                              generator=gen(43))
    small = ex.transform_geometry(windows, params, patch_size=16)
    m = task.context + 10
    big = torch.stack([torch.nn.functional.pad(images[n], (20, 20, 20, 20))[
        :, top + 20 - m:top + 20 + 16 + m, left + 20 - m:left + 20 + 16 + m]
        for n, top, left, _ in origins.tolist()])
    assert torch.allclose(small, ex.transform_geometry(big, params, patch_size=16), atol=1e-5)


def test_flat_images_fall_back_to_uniform_positions():
    windows, origins = ex.extract_seeds(torch.zeros(5, 3, 40, 40), num_seeds=5, patch_size=16,
                                        context=0, generator=gen(17))
    assert windows.shape == (5, 3, 16, 16)


# ----------------------------------------------------------------- bad input

def test_bad_input_gives_clear_errors():
    images = torch.rand(10, 3, 40, 40)
    with pytest.raises(ValueError, match="a 48x48 region.*smaller patch_size"):
        ex.extract_seeds(images, num_seeds=5, patch_size=32, context=8, generator=gen(0))
    with pytest.raises(ValueError, match="cannot draw 11 seed patches from 10 images"):
        ex.extract_seeds(images, num_seeds=11, patch_size=16, context=0, generator=gen(0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ex.gradient_magnitude(torch.rand(3, 40, 40))
    with pytest.raises(ValueError, match="smaller than the patch"):
        ex.transform_geometry(torch.rand(2, 3, 20, 20), ex.identity_params(2), patch_size=32)
    task = get_task("exemplar", num_classes=4)
    assert task.min_image_size == 62 and task.window_size == 82
    with pytest.raises(ValueError, match="at least 82x82"):
        task.make_batch(torch.rand(4, 3, 64, 64), generator=gen(0), labels=torch.arange(4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        task.make_batch(torch.rand(3, 82, 82), generator=gen(0), labels=torch.arange(3))
    with pytest.raises(ValueError, match="labels="):
        task.make_batch(torch.rand(4, 3, 82, 82), generator=gen(0))
    with pytest.raises(ValueError, match="num_classes"):
        get_task("exemplar", num_classes=1)
    with pytest.raises(ValueError, match="patch_size >= 16"):
        get_task("exemplar", patch_size=8)


def test_more_classes_than_images_is_a_clear_error(tiny_scenes):
    task = get_task("exemplar", num_classes=len(tiny_scenes.unlabeled) + 1, patch_size=16)
    with pytest.raises(ValueError, match="at most 256 surrogate classes"):
        task.training_data(tiny_scenes)


# ----------------------------------------------------------------- the task

def test_task_data_batches_and_model(tiny_scenes):
    task = get_task("exemplar", num_classes=64, patch_size=16)
    windows, labels = task.training_data(tiny_scenes)
    assert windows.shape == (64, 3, 42, 42) and torch.equal(labels, torch.arange(64))
    again, _ = get_task("exemplar", num_classes=64, patch_size=16).training_data(tiny_scenes)
    assert torch.equal(windows, again)  # the seeds depend on the options only
    other, _ = get_task("exemplar", num_classes=64, patch_size=16,
                        seed=1).training_data(tiny_scenes)
    assert not torch.equal(windows, other)
    inputs, targets = task.make_batch(to_float(windows[:10]), generator=gen(0),
                                      labels=labels[:10])
    assert inputs.shape == (10, 3, 16, 16) and torch.equal(targets, labels[:10])
    model = task.build_model(build_backbone(width=8))
    assert model(inputs).shape == (10, 64)
    assert task.chance == 1 / 64 and len(task.class_names) == 64
    assert task.samples_per_class(6400) == 100
    assert task.options()["num_classes"] == 64


def test_grayscale_images_work():
    images = torch.rand(6, 1, 82, 82, generator=gen(18))
    task = get_task("exemplar", num_classes=6)
    inputs, targets = task.make_batch(images, generator=gen(0), labels=torch.arange(6))
    assert inputs.shape == (6, 1, 32, 32) and torch.isfinite(inputs).all()
    # only the value transform acts on gray pixels: compare with its formula
    p = ex.sample_params(6, patch_size=32, channels=1, generator=gen(19),
                         families=("saturation_value",))
    out = ex.adjust_hsv(images, p)
    ref = (images.pow(p["val_power"].view(-1, 1, 1, 1)) * p["val_factor"].view(-1, 1, 1, 1)
           + p["val_shift"].view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(out, ref, atol=1e-6)
    p = ex.sample_params(6, patch_size=32, channels=1, generator=gen(20), families=("hue",))
    assert torch.allclose(ex.adjust_hsv(images, p), images)


def test_short_training_beats_chance(tiny_scenes):
    task = get_task("exemplar", num_classes=16, patch_size=16)
    config = TrainConfig(budget_samples=16 * 128, batch_size=64, width=8, lr=0.05)
    trained = train(task, tiny_scenes, config, progress=False)
    assert trained.seconds["batch"] > 0
    windows, labels = task.evaluation_data(tiny_scenes)
    # eight fresh transformations of every seed, none of them seen in training
    logits, targets, _ = predict(trained, windows.repeat(8, 1, 1, 1), labels.repeat(8))
    acc = (logits.argmax(1) == targets).float().mean().item()
    assert acc > 3 * task.chance


def test_accuracy_by_family_reports_each_family_alone():
    windows = torch.rand(12, 3, 82, 82, generator=gen(21))
    task = get_task("exemplar", num_classes=12)
    m = task.context
    seeds = windows[..., m:m + 32, m:m + 32].flatten(1)

    class NearestSeed(torch.nn.Module):
        """Names the seed whose untransformed patch is closest in pixels."""

        def forward(self, x):
            return -torch.cdist(x.flatten(1), seeds)

    acc = task.accuracy_by_family(NearestSeed(), windows, torch.arange(12))
    assert list(acc) == ["none", *ex.FAMILIES]
    assert acc["none"] == 1.0
    assert all(0.0 <= v <= 1.0 for v in acc.values())
