"""Precision: what "auto" chooses, bfloat16 training against float32, inference in either."""

import dataclasses

import pytest
import torch

from ssl_teach import train as train_module
from ssl_teach.data import to_float
from ssl_teach.pretext import get_task
from ssl_teach.probe import extract_features
from ssl_teach.profiles import PROFILES, Profile
from ssl_teach.train import (
    SupervisedTask, TrainConfig, autocast_dtype, checkpoint_path, cpu_has_native_bfloat16,
    full_config, inference_dtype, predict, pretext_accuracy, train, untrained,
)

TINY = TrainConfig(budget_samples=256, batch_size=64, width=8, depth=3)

CPU = torch.device("cpu")


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU does (True) or does not (False) compute bfloat16 in hardware."""
    def set_native(value: bool):
        monkeypatch.setattr(train_module, "cpu_has_native_bfloat16", lambda: value)
    return set_native


def test_auto_picks_bfloat16_only_where_the_cpu_has_it(native):
    native(False)
    assert autocast_dtype("auto", CPU) is None  # float32 where bfloat16 would be emulated
    assert autocast_dtype("float32", CPU) is None
    assert autocast_dtype("bfloat16", CPU) is torch.bfloat16  # forced: emulated, but asked for
    native(True)
    assert autocast_dtype("auto", CPU) is torch.bfloat16
    assert autocast_dtype("float32", CPU) is None  # the user's float32 always wins


def test_the_capability_comes_from_what_torch_reports(monkeypatch):
    # torch >= 2.9: the capability table
    for caps, expected in (({"avx512_bf16": True}, True), ({"amx_bf16": True}, True),
                           ({"avx512_f": True, "avx2": True}, False), ({}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps,
                            raising=False)
        assert cpu_has_native_bfloat16() is expected, caps
    # older torch: the probes torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    for avx512_bf16, amx, expected in ((True, False, True), (False, True, True),
                                       (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v,
                            raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v,
                            raising=False)
        assert cpu_has_native_bfloat16() is expected


def test_bad_precision_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        dataclasses.replace(PROFILES["quick"], precision="half")
    from ssl_teach import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "rotation", "--precision", "half"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_the_resolved_precision_is_part_of_the_checkpoint_key(tiny_scenes, native):
    task = get_task("rotation")
    f32 = dataclasses.replace(TINY, precision="float32")
    bf16 = dataclasses.replace(TINY, precision="bfloat16")
    assert checkpoint_path(task, tiny_scenes, f32) != checkpoint_path(task, tiny_scenes, bf16)
    native(False)
    assert full_config(task, tiny_scenes, TINY)["train"]["precision"] == "float32"
    assert checkpoint_path(task, tiny_scenes, TINY) == checkpoint_path(task, tiny_scenes, f32)
    native(True)
    assert full_config(task, tiny_scenes, TINY)["train"]["precision"] == "bfloat16"
    assert checkpoint_path(task, tiny_scenes, TINY) == checkpoint_path(task, tiny_scenes, bf16)


def test_the_profile_precision_reaches_the_training_config():
    quick = PROFILES["quick"]
    assert quick.precision == "auto" and quick.train_config("rotation").precision == "auto"
    forced = dataclasses.replace(quick, precision="float32")
    assert forced.train_config("rotation").precision == "float32"
    assert forced.train_config(None, seed=3).seed == 3
    # a task may say what "auto" means for it; a precision the user forces wins
    assert quick.train_config("simclr").precision == "float32"
    assert dataclasses.replace(quick, precision="bfloat16").train_config(
        "simclr").precision == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        dataclasses.replace(quick, task_precision={"simclr": "half"})


def test_bfloat16_training_reaches_the_float32_accuracy(tiny_scenes):
    """A tiny rotation budget in bfloat16 and in float32 from the same seed: the same held-out
    pretext accuracy within TOLERANCE; the parameters, the optimiser state and the BatchNorm
    statistics stay float32."""
    # absolute; well inside the seed-to-seed spread of this run (seeds 0, 1, 2 in float32
    # reach 0.62, 0.75, 0.71)
    TOLERANCE = 0.05
    task = get_task("rotation")
    cfg = TrainConfig(budget_samples=2048, batch_size=64, width=8, depth=3)
    runs = {p: train(task, tiny_scenes, dataclasses.replace(cfg, precision=p), progress=False,
                     cache=False) for p in ("float32", "bfloat16")}
    accs = {}
    for p, t in runs.items():
        assert t.config["train"]["precision"] == p
        accs[p] = pretext_accuracy(t, tiny_scenes, precision="float32")
        assert all(v.dtype in (torch.float32, torch.int64) for v in t.model.state_dict().values())
    assert min(accs.values()) > 0.45, accs  # learned: chance is 0.25
    assert abs(accs["bfloat16"] - accs["float32"]) <= TOLERANCE, accs
    # it really trained in bfloat16: rounding made other weights than float32's
    w32, w16 = (runs[p].model.backbone.blocks[0][0].weight for p in ("float32", "bfloat16"))
    assert not torch.allclose(w32, w16, atol=1e-4)


def test_optimiser_state_stays_float32_under_bfloat16(tiny_scenes, monkeypatch):
    """The momentum buffers of SGD are float32 while the step runs under bfloat16 autocast."""
    seen = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.extend(self.state[p]["momentum_buffer"].dtype for g in self.param_groups
                    for p in g["params"] if "momentum_buffer" in self.state[p])
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    train(get_task("rotation"), tiny_scenes, dataclasses.replace(TINY, precision="bfloat16"),
          progress=False, cache=False)
    assert seen and set(seen) == {torch.float32}


def test_batchnorm_statistics_stay_float32_under_bfloat16_autocast():
    """Autocast feeds BatchNorm bfloat16 activations on the CPU; its running statistics stay
    float32 and match a float32 forward pass to bfloat16's rounding of the inputs."""
    from ssl_teach.models import build_backbone

    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = build_backbone(width=8, depth=2, seed=0), build_backbone(width=8, depth=2, seed=0)
    a.train()(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = b.train()(x)
    assert out[0].dtype == torch.bfloat16  # it really ran in bfloat16
    for ma, mb in zip(a.modules(), b.modules()):
        if isinstance(ma, torch.nn.BatchNorm2d):
            assert mb.running_mean.dtype == mb.running_var.dtype == torch.float32
            assert torch.allclose(ma.running_mean, mb.running_mean, atol=2e-3, rtol=2e-2)
            assert torch.allclose(ma.running_var, mb.running_var, atol=2e-3, rtol=2e-2)


def test_inference_follows_the_model_and_the_users_choice(tiny_scenes, native):
    native(True)
    assert inference_dtype("bfloat16", CPU) is torch.bfloat16
    assert inference_dtype("float32", CPU) is None  # trained in float32: inferred in float32
    assert inference_dtype("bfloat16", CPU, "float32") is None
    native(False)
    assert inference_dtype("bfloat16", CPU) is None  # a float32 machine infers in float32
    assert inference_dtype("float32", CPU, "bfloat16") is torch.bfloat16


def test_bfloat16_inference_agrees_with_float32(tiny_scenes):
    """Predictions and probe features of one model in both precisions: the same answers
    on nearly every input, features equal to bfloat16's rounding."""
    t = train(get_task("rotation"), tiny_scenes, TINY, progress=False, cache=False)
    a, ta, _ = predict(t, tiny_scenes.test_images, precision="float32")
    b, tb, _ = predict(t, tiny_scenes.test_images, precision="bfloat16")
    assert torch.equal(ta, tb) and a.dtype == b.dtype == torch.float32
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.95
    fa = extract_features(t.backbone, tiny_scenes.test_images, precision="float32")
    fb = extract_features(t.backbone, tiny_scenes.test_images, precision="bfloat16")
    for block in fa:
        rel = (fa[block] - fb[block]).norm() / fa[block].norm()
        assert 0 < rel < 0.05, (block, rel)


def test_inference_leaves_the_model_as_it_was(tiny_scenes):
    """predict and extract_features: no BatchNorm statistic moves, the model stays in eval()
    mode, channels_last, on the CPU; the results are ordinary tensors."""
    t = untrained(get_task("rotation"), tiny_scenes, TINY)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    logits, _, inputs = predict(t, tiny_scenes.test_images[:10], keep_inputs=True)
    feats = extract_features(t.backbone, tiny_scenes.test_images[:10])
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    weight = t.model.backbone.blocks[0][0].weight
    assert not t.model.training and weight.device.type == "cpu"
    assert weight.is_contiguous(memory_format=torch.channels_last)
    logits.add_(1)  # not inference tensors: the caller may change them
    inputs.mul_(2)
    feats["block1"].sub_(1)


def test_a_direct_call_of_a_trained_model_matches_predict(tiny_scenes):
    """Trained models come back in channels_last (the fast path for a direct call too);
    the answers are those of the contiguous model."""
    t = train(get_task("rotation"), tiny_scenes, TINY, progress=False, cache=False)
    x = to_float(tiny_scenes.test_images[:16])
    contiguous = t.model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        ref = contiguous(x)
    t.model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(t.model(x), ref, atol=1e-4)
    assert 0.0 <= pretext_accuracy(t, tiny_scenes, limit=16) <= 1.0


def test_precision_option_reaches_run_compare_and_the_models(monkeypatch, tiny_scenes, native):
    """``--precision float32`` on run and compare hands them the profile with that precision,
    and a profile's precision decides how its models train (and are keyed)."""
    from ssl_teach import cli, compare, experiment

    seen = {}

    def spy(name):
        def fake(*args, profile, **kwargs):
            seen[name] = profile
            raise ValueError("stop here")  # the CLI's one-line error: nothing trains
        return fake

    monkeypatch.setattr(experiment, "run", spy("run"))
    monkeypatch.setattr(compare, "compare", spy("compare"))
    assert cli.main(["run", "rotation", "--precision", "float32", "--quiet"]) == 2
    assert cli.main(["compare", "--precision", "bfloat16", "--quiet"]) == 2
    assert seen["run"].name == "quick" and seen["run"].precision == "float32"
    assert seen["compare"].precision == "bfloat16"
    assert cli.main(["run", "rotation", "--quiet"]) == 2
    assert seen["run"] == "quick"  # no option: the named profile, whose precision is auto

    native(True)
    tiny = Profile(name="quick", image_size=32, n_unlabeled=128, n_train=100, n_test=50,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3),
                   precision="float32")
    model = experiment.pretrain("rotation", tiny_scenes, tiny, progress=False)
    assert model.config["train"]["precision"] == "float32"  # not the native bfloat16 of auto
    assert model.backbone.trained_precision == "float32"


def test_step_flops_count_the_convolutions_and_the_head_forward_and_backward(tiny_scenes):
    """Counted per sample, as written out by hand for 32x32 inputs, widths 4 and 8: each
    convolution 2 * c_in * c_out * 9 * H * W forward, twice that backward (gradients of input
    and weights) except the first, whose input needs no gradient; the head likewise."""
    from ssl_teach.bench import step_flops

    cfg = TrainConfig(budget_samples=64, batch_size=32, width=4, depth=2)
    conv1 = 2 * 3 * 4 * 9 * 32 * 32
    conv2 = 2 * 4 * 8 * 9 * 16 * 16
    head = 2 * 8 * 10
    expected = 2 * conv1 + 3 * conv2 + 3 * head
    assert step_flops(SupervisedTask(num_classes=10), tiny_scenes, cfg) == expected


def test_matmul_rate_is_measured_in_both_precisions():
    from ssl_teach.bench import matmul_gflops

    for dtype in (torch.float32, torch.bfloat16):
        m = matmul_gflops(dtype, "cpu", size=512, seconds=0.2)
        assert 256 <= m["size"] <= 512 and m["gflops"] > 0


def test_bench_reports_both_precisions_the_speed_up_and_the_limit(monkeypatch):
    from ssl_teach import profiles
    from ssl_teach.bench import bench, format_bench

    tiny = Profile(name="quick", image_size=32, n_unlabeled=100, n_train=100, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    res = bench(["rotation", "supervised"], steps=2, images=100, device="cpu",
                precision="bfloat16")
    assert res["precision"]["chosen"] == "bfloat16"
    for name, r in res["tasks"].items():
        assert r["precision"] == "bfloat16" and r["samples"] == 64
        assert r["float32"]["samples"] == 64 and r["float32"]["samples_per_s"] > 0
        assert r["speedup"] == pytest.approx(r["samples_per_s"] / r["float32"]["samples_per_s"])
        assert r["inference_per_s"] > 0 and "trained" not in r and "trained" not in r["float32"]
    step = res["supervised_step"]
    assert step["gflop_per_sample"] > 0 and step["float32"] > 0 and step["bfloat16"] > 0
    assert set(res["matmul"]) == {"float32", "bfloat16"}
    text = format_bench(res)
    for part in ("float32/s", "bfloat16/s", "speed-up", "infer/s", "matrix products",
                 "supervised step", "of the bfloat16 matrix products"):
        assert part in text, part
    json_ready = __import__("json").dumps(res)  # --out writes it as JSON
    assert "rotation" in json_ready


def test_bench_runs_once_where_auto_means_float32(monkeypatch, native):
    from ssl_teach import profiles
    from ssl_teach.bench import bench

    native(False)
    tiny = Profile(name="quick", image_size=32, n_unlabeled=100, n_train=100, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3))
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    calls = []
    import ssl_teach.bench as bench_module

    original = bench_module.train

    def spy(task, data, config, **kwargs):
        calls.append(config.precision)
        return original(task, data, config, **kwargs)

    monkeypatch.setattr(bench_module, "train", spy)
    res = bench(["rotation"], steps=1, images=100, device="cpu")
    assert calls == ["float32"] and res["precision"]["chosen"] == "float32"
    assert res["tasks"]["rotation"]["speedup"] == 1.0


def test_bench_times_a_task_in_the_precision_its_profile_keeps(monkeypatch, native):
    from ssl_teach import profiles
    from ssl_teach.bench import bench, format_bench

    native(True)  # auto means bfloat16 here, but the profile keeps rotation in float32
    tiny = Profile(name="quick", image_size=32, n_unlabeled=100, n_train=100, n_test=20,
                   train=TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3),
                   task_precision={"rotation": "float32"})
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    res = bench(["rotation", "supervised"], steps=1, images=100, device="cpu")
    assert res["precision"]["chosen"] == "bfloat16"
    assert res["tasks"]["rotation"]["precision"] == "float32"
    assert res["tasks"]["rotation"]["speedup"] == 1.0
    assert res["tasks"]["supervised"]["precision"] == "bfloat16"
    assert "* the profile keeps this task in its own precision (rotation: float32)" in (
        format_bench(res))
