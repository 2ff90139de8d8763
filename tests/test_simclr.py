"""SimCLR: two views per image, each augmentation family and NT-Xent against loop references."""

import colorsys
import math

import pytest
import torch

from ssl_teach.models import build_backbone, global_pool
from ssl_teach.pretext import simclr as sc
from ssl_teach.train import TrainConfig, predict, train

from loop_references import bilinear


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand_images(n=3, c=3, h=8, w=8, seed=0):
    return torch.rand(n, c, h, w, generator=gen(seed))


# ----------------------------------------------------------------- slow per-sample references

def crop_loop(image, box, flip, size=None):
    """Output pixel (i, j) of a view of S x S pixels (S = size, or the image's H x W) shows the
    crop's point at the same relative place: x = left + (j + 0.5) / S * width (from the right
    edge when flipped), as a share of the image's width W."""
    c, h, w = image.shape
    oh, ow = (size, size) if size else (h, w)
    top, left, height, width = (float(v) for v in box)
    out = torch.empty(c, oh, ow)
    for i in range(oh):
        for j in range(ow):
            u = (ow - j - 0.5) / ow if flip else (j + 0.5) / ow
            x = (left + u * width) * w - 0.5
            y = (top + (i + 0.5) / oh * height) * h - 0.5
            out[:, i, j] = bilinear(image, x, y)
    return out


def luma(r, g, b):
    return 0.299 * r + 0.587 * g + 0.114 * b


def jitter_loop(image, b, c, s, hue):
    """Brightness, contrast, saturation and hue of one RGB image, pixel by pixel (colorsys)."""
    img = image.double().clone()
    img = (img * b).clamp(0, 1)
    mean = sum(luma(*img[:, i, j].tolist()) for i in range(img.shape[1])
               for j in range(img.shape[2])) / (img.shape[1] * img.shape[2])
    img = (c * img + (1 - c) * mean).clamp(0, 1)
    out = torch.empty_like(img)
    for i in range(img.shape[1]):
        for j in range(img.shape[2]):
            r, g, bl = img[:, i, j].tolist()
            gray = luma(r, g, bl)
            r, g, bl = (min(max(s * v + (1 - s) * gray, 0.0), 1.0) for v in (r, g, bl))
            hh, ss, vv = colorsys.rgb_to_hsv(r, g, bl)
            out[:, i, j] = torch.tensor(colorsys.hsv_to_rgb((hh + hue) % 1.0, ss, vv))
    return out.float()


def nt_xent_loop(z, temperature, pairs):
    """Eq. (1) of the paper, term by term: pairs is a list of (i, j) positive pairs, every view
    in exactly one; the loss averages l(i, j) and l(j, i) over the pairs."""
    def sim(a, b):
        return float(z[a] @ z[b]) / (float(z[a].norm()) * float(z[b].norm()))

    def loss(i, j):
        denominator = sum(math.exp(sim(i, k) / temperature) for k in range(len(z)) if k != i)
        return -math.log(math.exp(sim(i, j) / temperature) / denominator)

    return sum(loss(i, j) + loss(j, i) for i, j in pairs) / (2 * len(pairs))


# ----------------------------------------------------------------- augmentations

def test_crop_resize_flip_matches_the_loop_reference():
    images = rand_images(4, h=7, w=9, seed=1)
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.3, 0.5, 0.6], [0.5, 0.0, 0.5, 0.25],
                        [0.2, 0.2, 0.3, 0.7]])
    flip = torch.tensor([False, True, False, True])
    out = sc.crop_resize_flip(images, box, flip)
    assert out.shape == images.shape
    for n in range(4):
        assert torch.allclose(out[n], crop_loop(images[n], box[n], bool(flip[n])), atol=1e-5), n


@pytest.mark.parametrize("size", [4, 16])  # smaller and larger than the 7 x 9 images
def test_views_of_another_size_match_the_loop_reference(size):
    images = rand_images(3, h=7, w=9, seed=5)
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.3, 0.5, 0.6], [0.2, 0.2, 0.3, 0.7]])
    flip = torch.tensor([False, True, False])
    out = sc.crop_resize_flip(images, box, flip, size=size)
    assert out.shape == (3, 3, size, size)
    for n in range(3):
        assert torch.allclose(out[n], crop_loop(images[n], box[n], bool(flip[n]), size),
                              atol=1e-5), n


def test_whole_image_box_is_the_identity_and_flip_mirrors():
    images = rand_images(2, seed=2)
    box = sc.identity_params(2)["box"]
    assert torch.allclose(sc.crop_resize_flip(images, box, torch.tensor([False, False])),
                          images, atol=1e-6)
    assert torch.allclose(sc.crop_resize_flip(images, box, torch.tensor([True, True])),
                          images.flip(-1), atol=1e-6)


def test_colour_jitter_matches_the_loop_reference():
    images = rand_images(3, h=5, w=6, seed=3)
    p = sc.sample_params(3, families=("colour_jitter",), strength=1.0, generator=gen(4))
    p["brightness"] = torch.tensor([1.4, 0.6, 1.0])  # some pixels clamp at 1
    out = sc.colour_jitter(images, p)
    for n in range(3):
        ref = jitter_loop(images[n], *(float(p[k][n]) for k in
                                       ("brightness", "contrast", "saturation", "hue")))
        assert torch.allclose(out[n], ref, atol=1e-5), n


@pytest.mark.parametrize("family", ["brightness", "contrast", "saturation", "hue"])
def test_each_jitter_operation_alone_matches_its_reference(family):
    images = rand_images(2, h=4, w=5, seed=5)
    value = torch.tensor([0.3, 0.15]) if family == "hue" else torch.tensor([1.5, 0.4])
    fn = {"brightness": sc.adjust_brightness, "contrast": sc.adjust_contrast,
          "saturation": sc.adjust_saturation, "hue": sc.adjust_hue}[family]
    out = fn(images, value)
    for n in range(2):
        args = {"b": 1.0, "c": 1.0, "s": 1.0, "hue": 0.0}
        args[{"brightness": "b", "contrast": "c", "saturation": "s", "hue": "hue"}[family]] = (
            float(value[n]))
        assert torch.allclose(out[n], jitter_loop(images[n], **args), atol=1e-5), (family, n)


def test_grayscale_matches_the_loop_reference():
    images = rand_images(3, seed=6)
    flags = torch.tensor([True, False, True])
    out = sc.random_grayscale(images, flags)
    for n in range(3):
        for i in range(8):
            for j in range(8):
                want = luma(*images[n, :, i, j].tolist()) if flags[n] else None
                got = out[n, :, i, j]
                if want is None:
                    assert torch.equal(got, images[n, :, i, j])
                else:
                    assert torch.allclose(got, torch.full((3,), want), atol=1e-6)


def test_gray_images_get_brightness_and_contrast_only():
    images = rand_images(4, c=1, seed=7)
    p = sc.sample_params(4, generator=gen(8))
    views = sc.apply(images, {**p, "box": sc.identity_params(4)["box"],
                              "flip": torch.zeros(4, dtype=torch.bool)})
    b, c = p["brightness"].view(-1, 1, 1, 1), p["contrast"].view(-1, 1, 1, 1)
    ref = (images * b).clamp(0, 1)
    ref = (c * ref + (1 - c) * ref.mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    assert views.shape == images.shape and torch.allclose(views, ref, atol=1e-6)


# ----------------------------------------------------------------- parameters

def test_parameters_follow_the_papers_ranges():
    n = 4000
    p = sc.sample_params(n, strength=0.5, generator=gen(9))
    top, left, height, width = p["box"].T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 1 + 1e-6).all() and (left + width <= 1 + 1e-6).all()
    area = height * width
    assert area.max() <= 1 + 1e-6 and area.min() >= sc.SCALE[0] - 1e-6
    inside = (height < 1) & (width < 1)  # uncut crops keep their drawn aspect ratio
    ratio = (width / height)[inside]
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    assert abs(p["flip"].float().mean() - 0.5) < 0.04
    assert abs(p["grayscale"].float().mean() - 0.2) < 0.03
    jittered = p["hue"] != 0
    assert abs(jittered.float().mean() - 0.8) < 0.03
    assert (p["brightness"][~jittered] == 1).all() and (p["hue"][~jittered] == 0).all()
    b = p["brightness"][jittered]
    assert b.min() >= 0.6 and b.max() <= 1.4 and b.max() - b.min() > 0.75
    assert p["hue"].abs().max() <= 0.1 and p["hue"].abs().max() > 0.09


def test_switching_a_family_off_leaves_the_others_unchanged():
    full = sc.sample_params(50, generator=gen(10))
    for family in sc.FAMILIES:
        rest = tuple(f for f in sc.FAMILIES if f != family)
        part = sc.sample_params(50, families=rest, generator=gen(10))
        ident = sc.identity_params(50)
        keys = {"crop": ["box"], "flip": ["flip"], "grayscale": ["grayscale"],
                "colour_jitter": ["brightness", "contrast", "saturation", "hue"]}[family]
        for key in full:
            assert torch.equal(part[key], ident[key] if key in keys else full[key]), (family, key)


def test_identity_params_and_no_families_leave_images_unchanged():
    images = rand_images(3, seed=11)
    p = sc.sample_params(3, families=(), generator=gen(12))
    for params in (p, sc.identity_params(3)):
        assert torch.allclose(sc.apply(images, params), images, atol=1e-5)


# ----------------------------------------------------------------- NT-Xent

@pytest.mark.parametrize("n_views,group", [(8, 4), (8, 2), (10, 3), (6, 8)])
def test_nt_xent_matches_the_papers_equation(n_views, group):
    z = torch.randn(n_views, 5, generator=gen(n_views + group))
    got = sc.nt_xent(z, temperature=0.3, group=group).item()
    # the reference sums over the views of each group separately (the last may be smaller)
    size, total = 2 * group, 0.0
    for start in range(0, n_views, size):
        part = z[start:start + size]
        pairs = [(i, i + 1) for i in range(0, len(part), 2)]
        total += nt_xent_loop(part, 0.3, pairs) * len(part)
    assert got == pytest.approx(total / n_views, rel=1e-5)


def test_logits_put_each_partner_at_its_target_and_leave_the_view_out():
    z = torch.randn(10, 4, generator=gen(13))
    logits = sc.nt_xent_logits(z, temperature=0.5, group=3)
    targets = sc.partner_targets(10, group=3)
    assert logits.shape == (10, 5)
    zn = torch.nn.functional.normalize(z, dim=1)
    for r in range(10):
        start = r - r % 6
        others = [k for k in range(start, min(start + 6, 10)) if k != r]
        partner = r + 1 if r % 2 == 0 else r - 1
        assert others.index(partner) == targets[r]
        for col, k in enumerate(others):
            assert logits[r, col] == pytest.approx(float(zn[r] @ zn[k]) / 0.5, abs=1e-5)
        assert (logits[r, len(others):] == sc.NO_CANDIDATE).all()  # the smaller last group


def test_accuracy_of_the_logits_is_nearest_neighbour_is_partner():
    z = torch.randn(16, 3, generator=gen(14))
    logits = sc.nt_xent_logits(z, temperature=0.2, group=8)
    hits = logits.argmax(1) == sc.partner_targets(16, group=8)
    zn = torch.nn.functional.normalize(z, dim=1)
    for r in range(16):
        sims = [(float(zn[r] @ zn[k]), k) for k in range(16) if k != r]
        nearest = max(sims)[1]
        assert bool(hits[r]) == (nearest == (r ^ 1)), r


# ----------------------------------------------------------------- the task

def test_make_batch_gives_two_views_per_image_in_pairs():
    task = sc.SimCLRTask(group=4, view_size=24)
    images = (rand_images(5, h=16, w=16, seed=15) * 255).to(torch.uint8)
    inputs, targets = task.make_batch(images, generator=gen(16))
    assert inputs.shape == (10, 3, 24, 24) and inputs.dtype == torch.float32
    assert 0 <= inputs.min() and inputs.max() <= 1
    assert torch.equal(targets, torch.tensor([0, 0, 2, 2, 4, 4, 6, 6, 0, 0]))
    assert not torch.allclose(inputs[0], inputs[1])  # two different augmentations
    # the same generator state gives the same batch; the views are apply() of the drawn params
    again, _ = task.make_batch(images, generator=gen(16))
    assert torch.equal(inputs, again)
    p = task.sample_params(10, generator=gen(16))
    assert torch.allclose(sc.two_views(images.float() / 255, p, size=24), inputs)
    same_size = sc.SimCLRTask(group=4, view_size=0)  # views of the image's size
    assert same_size.make_batch(images, generator=gen(16))[0].shape == (10, 3, 16, 16)
    off = sc.SimCLRTask(crop=False, flip=False, colour_jitter=False, grayscale=False,
                        view_size=0)
    plain, _ = off.make_batch(images, generator=gen(16))
    assert torch.allclose(plain, (images.float() / 255).repeat_interleave(2, 0), atol=1e-5)


def test_model_logits_are_nt_xent_of_the_projections():
    task = sc.SimCLRTask(group=4, temperature=0.5, projection_dim=6)
    model = task.build_model(build_backbone(width=4)).eval()
    inputs, targets = task.make_batch(rand_images(4, h=16, w=16, seed=17), generator=gen(18))
    logits = model(inputs)
    assert logits.shape == (8, task.num_classes) == (8, 7)
    z = model.project(inputs)
    assert z.shape == (8, 6)
    pairs = [(i, i + 1) for i in range(0, 8, 2)]
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    assert loss == pytest.approx(nt_xent_loop(z.detach(), 0.5, pairs), rel=1e-5)


def test_task_contract():
    task = sc.SimCLRTask()
    assert task.name == "simclr" and task.samples_per_image == 2 and task.min_image_size == 16
    assert task.num_classes == 127 and task.chance == 1 / 127 and len(task.class_names) == 127
    assert task.families == sc.FAMILIES
    assert sc.SimCLRTask(colour_jitter=False).families == ("crop", "flip", "grayscale")
    opts = task.options()
    assert opts["temperature"] == 0.2 and opts["group"] == 64 and opts["colour_jitter"]
    assert opts["view_size"] == 32 and opts["min_scale"] == 0.3  # sized for CPU minutes
    assert task.probe_inputs(rand_images(2)).shape == (2, 3, 8, 8)


def test_head_features_are_the_pooled_backbone_and_its_projection():
    task = sc.SimCLRTask(group=4, projection_dim=5)
    model = task.build_model(build_backbone(width=4))
    images = (rand_images(6, h=16, w=16, seed=19) * 255).to(torch.uint8)
    feats = sc.head_features(model, images, batch_size=4)
    assert model.training  # put back as it was
    model.eval()
    with torch.no_grad():
        h = global_pool(model.backbone(images.float() / 255)[-1])
        assert torch.allclose(feats["backbone"], h, atol=1e-6)
        assert torch.allclose(feats["projection"], model.head(h), atol=1e-6)
    assert feats["projection"].shape == (6, 5)


def test_short_training_finds_partners_and_probes_the_head(tiny_scenes):
    task = sc.SimCLRTask(group=16)
    config = TrainConfig(budget_samples=32 * 48, batch_size=32, width=8, depth=3, lr=0.05)
    trained = train(task, tiny_scenes, config, progress=False)
    assert trained.history["samples"][-1] == 32 * 48
    logits, targets, _ = predict(trained, tiny_scenes.test_images[:64], batch_size=32)
    acc = (logits.argmax(1) == targets).float().mean().item()
    assert acc > 5 * task.chance
    head = sc.probe_head(trained.model, tiny_scenes)
    assert set(head.linear) == {"backbone", "projection"}
    assert all(0.0 <= v <= 1.0 for v in (*head.linear.values(), *head.knn.values()))


# ----------------------------------------------------------------- reading a network

def test_project_gives_the_heads_output_in_eval_mode_and_restores_training():
    task = sc.SimCLRTask(group=4, projection_dim=6)
    model = task.build_model(build_backbone(width=4))
    views = rand_images(10, h=16, w=16, seed=3)
    z = sc.project(model, views, batch_size=4)
    assert model.training and z.shape == (10, 6) and z.dtype == torch.float32
    model.eval()
    with torch.no_grad():
        assert torch.allclose(z, model.project(views), atol=1e-6)


def nearest_is_partner_loop(z, group):
    """Per view, by brute force: is its most similar other view in its group its partner?"""
    hits = []
    for i in range(len(z)):
        start = (i // (2 * group)) * 2 * group
        others = [k for k in range(start, min(start + 2 * group, len(z))) if k != i]
        sims = {k: float(torch.cosine_similarity(z[i], z[k], dim=0)) for k in others}
        hits.append(max(sims, key=sims.get) == i ^ 1)
    return sum(hits) / len(hits)


@pytest.mark.parametrize("group", [1, 2, 3, 8])
def test_partner_found_matches_a_brute_force_search(group):
    z = torch.randn(16, 5, generator=gen(4))
    z[1::2] = z[0::2] + 0.8 * torch.randn(8, 5, generator=gen(5))  # partners alike, not equal
    assert sc.partner_found(z, group=group) == pytest.approx(nearest_is_partner_loop(z, group))


def test_partner_found_falls_with_more_candidates_and_is_one_for_identical_views():
    z = torch.randn(64, 8, generator=gen(6)).repeat_interleave(2, 0)  # both views identical
    assert sc.partner_found(z, group=32) == 1.0
    noisy = z + 1.5 * torch.randn(z.shape, generator=gen(7))
    found = [sc.partner_found(noisy, group=g) for g in (1, 2, 8, 32, 64)]
    assert found[0] == 1.0 and all(a >= b for a, b in zip(found, found[1:]))
    assert found[-1] < 1.0


def test_negative_weights_are_the_softmax_over_the_negatives_sorted():
    z = torch.randn(12, 4, generator=gen(8))
    w = sc.negative_weights(z, temperature=0.5, group=3)
    assert w.shape == (12, 4) and torch.allclose(w.sum(1), torch.ones(12))
    assert (w[:, :-1] >= w[:, 1:]).all()
    # view 0 (group 0: views 0-5, partner 1): its negatives are views 2-5
    sims = torch.stack([torch.cosine_similarity(z[0], z[k], dim=0) for k in range(2, 6)])
    expected = (sims / 0.5).softmax(0).sort(descending=True).values
    assert torch.allclose(w[0], expected, atol=1e-6)
    # a lower temperature puts more of the push on the most similar negative
    assert (sc.negative_weights(z, temperature=0.1, group=3)[:, 0] >= w[:, 0] - 1e-6).all()
    with pytest.raises(ValueError, match="full groups"):
        sc.negative_weights(z[:10], temperature=0.5, group=3)


# ----------------------------------------------------------------- widgets

def test_two_view_explorer_switches_families_and_reads_the_network():
    from ssl_teach import widgets

    task = sc.SimCLRTask(group=4, view_size=16)
    model = task.build_model(build_backbone(width=4))
    images = (rand_images(6, h=24, w=24, seed=11) * 255).to(torch.uint8)
    explorer = widgets.TwoViewExplorer(task, images, model=model)
    assert explorer.views().shape == (8, 3, 16, 16)  # 4 images (the group), two views each
    assert explorer.rank is not None and 1 <= explorer.rank <= 7
    first = explorer.views()
    explorer.set(draw=5)
    assert not torch.equal(first, explorer.views())
    explorer.set(crop=False, flip=False, colour_jitter=False, grayscale=False)
    assert explorer.current_task().families == ()
    views = explorer.views()
    assert torch.equal(views[0], views[1])  # both views are the image, resized
    assert explorer.similarity == pytest.approx(1.0, abs=1e-5) and explorer.rank == 1
    assert "nothing" in explorer.status.value
    explorer.set(colour_jitter=True)
    assert explorer.current_task().families == ("colour_jitter",)
    assert 'type="checkbox"' in widgets.static_html(explorer.widget)
    with pytest.raises(ValueError, match="unknown augmentation families"):
        explorer.set(blur=True)


def test_partner_game_puts_the_partner_among_the_candidates_and_scores_both_players():
    from ssl_teach import widgets

    task = sc.SimCLRTask(group=4, view_size=16, crop=False, flip=False, colour_jitter=False,
                         grayscale=False)  # both views identical: the network cannot miss
    model = task.build_model(build_backbone(width=4))
    images = (rand_images(24, h=16, w=16, seed=12) * 255).to(torch.uint8)
    game = widgets.PartnerGame(model, task, images, n_questions=4, candidates=6, seed=1)
    assert game.candidates.shape == (4, 6, 3, 16, 16)
    for q in range(4):  # the partner sits at the target, the other candidates are other images
        t = int(game.targets[q])
        assert torch.equal(game.candidates[q, t], game.queries[q])
        assert all(not torch.equal(game.candidates[q, k], game.queries[q])
                   for k in range(6) if k != t)
    assert game.answer(int(game.targets[0])) and not game.answer((int(game.targets[1]) + 1) % 6)
    assert (game.learner_score, game.model_score) == (1, 2)
    assert "you said" in game.status.value and "Question 3/4" in game.status.value
    for t in game.targets[2:].tolist():
        game.answer(t)
    assert game.done and game.learner_score == 3 and not game.answer(0)
    with pytest.raises(ValueError, match="need 40 images"):
        widgets.PartnerGame(model, task, images, n_questions=10, candidates=4)
    with pytest.raises(ValueError, match="candidates must be 2..9"):
        widgets.PartnerGame(model, task, images, n_questions=2, candidates=12)


# ----------------------------------------------------------------- bad input

def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="temperature must lie in"):
        sc.SimCLRTask(temperature=0)
    with pytest.raises(ValueError, match="group .* must be a positive int"):
        sc.SimCLRTask(group=0)
    with pytest.raises(ValueError, match="crop scale"):
        sc.SimCLRTask(min_scale=1.5)
    with pytest.raises(ValueError, match="strength"):
        sc.SimCLRTask(strength=-1)
    with pytest.raises(ValueError, match="view size must be an int of at least 16"):
        sc.SimCLRTask(view_size=8)
    with pytest.raises(ValueError, match="view size"):
        sc.crop_resize_flip(rand_images(2), sc.identity_params(2)["box"],
                            torch.zeros(2, dtype=bool), size=0)
    with pytest.raises(ValueError, match="projection_dim"):
        sc.SimCLRTask(projection_dim=0)
    with pytest.raises(ValueError, match="unknown augmentation families"):
        sc.sample_params(3, families=("blur",), generator=gen(0))
    with pytest.raises(ValueError, match="even number of views"):
        sc.partner_targets(5, group=4)
    with pytest.raises(ValueError, match="pairs of views"):
        sc.nt_xent_logits(torch.randn(5, 3), temperature=0.5, group=4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        sc.SimCLRTask().make_batch(torch.rand(3, 16, 16), generator=gen(0))
    with pytest.raises(ValueError, match="box must be"):
        sc.crop_resize_flip(rand_images(2), torch.zeros(3, 4), torch.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="colour augmentations need RGB"):
        sc.colour_jitter(torch.rand(2, 2, 8, 8), sc.identity_params(2))
