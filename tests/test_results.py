"""Committed results: every record matches the code's configuration, a stale one fails, and the
README's tables are the ones generated from the records."""

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from ssl_teach import finetune, results
from ssl_teach.pretext import TASKS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXPECTED = ("compare-quick-scenes", "seeds-quick-scenes", "sweep-quick-scenes")
"""The records the README's tables come from, once they are committed."""


def _summary(mean, std=0.01, n=3):
    return {"mean": mean, "std": std, "runs": [mean] * n}


def fake_compare(sizes=("4", "16", "all")) -> dict:
    """The shape of compare()'s results, with made-up numbers."""
    methods = {}
    for i, name in enumerate([*TASKS, "random", "supervised"]):
        acc = 0.3 + 0.1 * i
        methods[name] = {
            "linear": {f"block{b}": acc for b in range(1, 5)},
            "knn": {f"block{b}": acc / 2 for b in range(1, 5)},
            "val": {f"block{b}": acc + 0.01 * b for b in range(1, 5)}, "best_block": "block4",
            "pretext": {"accuracy": 0.9, "chance": 0.25} if name in TASKS else None,
            "label_efficiency": {s: _summary(acc) for s in sizes},
            "finetune": {s: _summary(acc + 0.1) for s in sizes}}
    helps = finetune.pretraining_helps({n: m["finetune"] for n, m in methods.items()}, sizes)
    return {"profile": "quick", "dataset": "scenes", "tasks": list(TASKS), "seeds": [0, 1, 2],
            "train_seed": 0, "sizes": list(sizes), "methods": methods,
            "pretraining_helps": helps}


def fake_sweep() -> dict:
    runs = {t: [{"multiplier": m, "budget_samples": 1000 * m,
                 "pretext": {"accuracy": 0.5, "chance": 0.25},
                 "probe": {"best_block": "block3", "linear": 0.6, "val": 0.6},
                 "finetune": _summary(0.5)} for m in (1, 2)] for t in TASKS}
    return {"profile": "quick", "dataset": "scenes", "tasks": list(TASKS), "seeds": [0, 1, 2],
            "train_seed": 0, "multipliers": [1, 2], "size": 16, "scratch": _summary(0.2),
            "runs": runs}


@pytest.mark.parametrize("name", sorted({*EXPECTED, *(p.stem for p in results.committed())}))
def test_committed_records_match_the_code_and_the_readme(name):
    """A committed record was measured with the current configuration, and the README shows
    exactly its generated tables; without the record, the README shows no table of it."""
    blocks = results.readme_blocks(README.read_text())
    path = results.RESULTS_DIR / f"{name}.json"
    if not path.exists():
        assert name not in blocks, f"the README shows {name}, but it is not committed"
        return
    rec = results.check(path)  # raises StaleRecord, saying what changed
    assert rec["name"] == name
    assert name in blocks, f"{name} is committed but the README has no table generated from it"
    assert blocks[name] == results.markdown(rec), (
        "the README's table differs from the record: run "
        "`python -m ssl_teach results --readme README.md`")


def test_every_readme_table_comes_from_a_committed_record():
    for name in results.readme_blocks(README.read_text()):
        assert (results.RESULTS_DIR / f"{name}.json").exists(), name


def test_a_record_carries_its_provenance(tmp_path):
    path = results.write_record("compare", fake_compare(), command="python -m ssl_teach "
                                "compare --record", folder=tmp_path)
    assert path == tmp_path / "compare-quick-scenes.json"
    rec = results.load(path)
    p = rec["provenance"]
    assert set(p) == {"date", "machine", "arithmetic", "command", "package_version",
                      "fingerprint"}
    assert results.same_arithmetic(rec)  # written here, with this machine's arithmetic
    elsewhere = {**rec, "provenance": {**p, "arithmetic": "CPU kernels NONE, computes in "
                                                          "float16, torch 0.0"}}
    assert not results.same_arithmetic(elsewhere)
    assert not results.same_arithmetic({**rec, "provenance": {k: v for k, v in p.items()
                                                              if k != "arithmetic"}})
    assert p["command"].endswith("--record") and "cores" in p["machine"]
    assert p["fingerprint"] == results.fingerprint(results.configuration(
        "compare", sizes=["4", "16", "all"]))
    assert rec["config"]["finetune"]["recipe"] == dataclasses.asdict(finetune.RECIPES["quick"])
    assert set(rec["config"]["tasks"]) == set(TASKS)
    assert results.check(path) == rec  # fresh: it matches the code


def test_a_stale_record_fails_the_check_and_says_what_changed(tmp_path, monkeypatch):
    path = results.write_record("sweep", fake_sweep(), command="sweep", folder=tmp_path)
    longer = dataclasses.replace(finetune.RECIPES["quick"],
                                 steps=finetune.RECIPES["quick"].steps + 1)
    monkeypatch.setitem(finetune.RECIPES, "quick", longer)  # the code changed after the run
    with pytest.raises(results.StaleRecord, match=r"finetune\.recipe\.steps"):
        results.check(path)


def test_a_record_edited_by_hand_fails_the_check(tmp_path):
    path = results.write_record("compare", fake_compare(), command="c", folder=tmp_path)
    rec = json.loads(path.read_text())
    rec["config"]["probe"]["l2_grid"] = [1.0]
    path.write_text(json.dumps(rec))
    with pytest.raises(results.StaleRecord, match="does not hash to its fingerprint"):
        results.check(path)


def test_the_fingerprint_covers_tasks_profile_and_probe(monkeypatch):
    from ssl_teach import probe, profiles

    base = results.fingerprint(results.configuration("compare"))
    assert base == results.fingerprint(results.configuration("compare"))
    assert base != results.fingerprint(results.configuration("compare", seeds=(0, 1)))
    assert base != results.fingerprint(results.configuration("compare", tasks=["rotation"]))
    quick = profiles.PROFILES["quick"]
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(
        quick, task_budget={**quick.task_budget, "rotation": 1}))
    assert base != results.fingerprint(results.configuration("compare"))
    monkeypatch.setitem(profiles.PROFILES, "quick", quick)
    monkeypatch.setattr(probe, "L2_GRID", (1.0,))
    assert base != results.fingerprint(results.configuration("compare"))
    monkeypatch.undo()
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(quick, workers=3))
    assert base == results.fingerprint(results.configuration("compare"))  # speed only


def test_readme_blocks_are_regenerated_from_the_records(tmp_path):
    results.write_record("compare", fake_compare(), command="c", folder=tmp_path)
    text = ("intro\n<!-- results: compare-quick-scenes -->\nold table\n<!-- /results -->\n"
            "outro\n")
    new = results.update_readme(text, folder=tmp_path)
    body = results.readme_blocks(new)["compare-quick-scenes"]
    assert body == results.markdown(results.load(tmp_path / "compare-quick-scenes.json"))
    assert new.startswith("intro\n") and new.endswith("outro\n")
    assert "| random (= from scratch) |" in body and "compare-quick-scenes.json" in body
    assert results.update_readme(new, folder=tmp_path) == new
    with pytest.raises(ValueError, match="no record"):
        results.update_readme("<!-- results: sweep-quick-scenes -->\nx\n<!-- /results -->",
                              folder=tmp_path)


def test_the_sweep_table_has_a_row_per_task_and_budget(tmp_path):
    path = results.write_record("sweep", fake_sweep(), command="s", folder=tmp_path)
    table = results.markdown(path)
    for task in TASKS:
        assert f"| {task} | ×1 (1,000 samples)" in table and f"| {task} | ×2" in table
    assert "from scratch: 20.0 ± 1.0" in table


def fake_vary() -> dict:
    def row(value, probe, default=False):
        return {"value": value, "default": default, "pretext": _summary(0.5),
                "chance": 1 / 127, "probe": _summary(probe, std=0.02),
                "blocks": ["block3"] * 3, "train_seconds": 20.0}

    return {"profile": "quick", "dataset": "scenes", "task": "simclr",
            "options": {"temperature": [0.2, 1.0]}, "default": {"temperature": 0.2},
            "train_seeds": [0, 1, 2], "random": _summary(0.45),
            "runs": {"temperature": [row(0.2, 0.6, True), row(1.0, 0.5)]}}


def test_a_settings_record_names_its_task_and_says_which_differences_are_real(tmp_path):
    path = results.write_record("vary", fake_vary(), command="vary", folder=tmp_path)
    assert path.name == "vary-simclr-quick-scenes.json"
    rec = results.check(path)
    assert rec["config"]["params"]["options"] == {"temperature": [0.2, 1.0]}
    assert set(rec["config"]["tasks"]) == {"simclr"}
    table = results.markdown(rec)
    assert "| temperature = 0.2 | 50.0 ± 1.0 (0.8) | 60.0 ± 2.0 | the profile's setting |" in table
    assert "| temperature = 1.0 |" in table and "-10.0, beyond the spread" in table
    assert "(random init: 45.0 ± 1.0)" in table


def test_the_results_command_checks_and_prints(tmp_path, monkeypatch, capsys):
    from ssl_teach import cli

    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    assert cli.main(["results"]) == 0
    assert "no result files" in capsys.readouterr().out
    results.write_record("compare", fake_compare(), command="c")
    assert cli.main(["results"]) == 0
    assert "compare-quick-scenes.json: matches the code" in capsys.readouterr().out
    assert cli.main(["results", "--markdown", "compare-quick-scenes"]) == 0
    assert "<!-- results: compare-quick-scenes -->" in capsys.readouterr().out
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results: compare-quick-scenes -->\n\n<!-- /results -->\n")
    assert cli.main(["results", "--readme", str(readme)]) == 0
    assert results.readme_blocks(readme.read_text())["compare-quick-scenes"].startswith("|")
    longer = dataclasses.replace(finetune.RECIPES["quick"], lr=1.0)
    monkeypatch.setitem(finetune.RECIPES, "quick", longer)
    assert cli.main(["results"]) == 2
    assert "finetune.recipe.lr" in capsys.readouterr().err


def test_records_ship_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-data"]["ssl_teach.results"] == ["*.json"]
    assert results.RESULTS_DIR == ROOT / "ssl_teach" / "results"


def test_record_files_are_not_ignored_by_git():
    import subprocess

    for name in EXPECTED:
        res = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q",
                              f"ssl_teach/results/{name}.json"], capture_output=True)
        assert res.returncode == 1, f"git ignores ssl_teach/results/{name}.json"


def fake_seeds() -> dict:
    from ssl_teach.compare import rank_tasks

    methods = {name: {"probe": _summary(0.5 + 0.05 * i), "blocks": ["block3"] * 3,
                      "pretext": _summary(0.9) if name in TASKS else None}
               for i, name in enumerate([*TASKS, "random", "supervised"])}
    return {"profile": "quick", "dataset": "scenes", "tasks": list(TASKS),
            "train_seeds": [0, 1, 2], "methods": methods,
            "ranking": rank_tasks(methods, TASKS)}


def test_a_seeds_record_checks_and_says_which_tasks_it_ranks(tmp_path):
    path = results.write_record("seeds", fake_seeds(), command="python -m ssl_teach compare "
                                "--train-seeds 0,1,2 --record", folder=tmp_path)
    assert path.name == "seeds-quick-scenes.json"
    rec = results.check(path)
    assert rec["config"]["params"]["train_seeds"] == [0, 1, 2]
    table = results.markdown(rec)
    random = 100 * (0.5 + 0.05 * len(TASKS))  # fake_seeds' number for the method after the tasks
    assert "training seeds 0, 1, 2" in table and f"| random | {random:.1f} ± 1.0 |" in table
    assert "yes:" in table  # 5 points apart with a spread of 1.4


def test_an_empty_block_does_not_swallow_the_next_one():
    text = ("<!-- results: a -->\n<!-- /results -->\n\nprose\n\n"
            "<!-- results: b -->\n| x |\n<!-- /results -->\n")
    assert results.readme_blocks(text) == {"a": "", "b": "| x |"}
