"""Student copies: valid notebooks, stubs in place of solutions, checkers that reject stubs."""

import ast
from pathlib import Path

import nbformat
import pytest

from ssl_teach import exercises
from ssl_teach.classroom import BANNER, SOLUTION_TAG, stub_source, write_student_copies

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.name: p for p in write_student_copies(ROOT / "notebooks", out)}


def _solution_cells(nb):
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and SOLUTION_TAG in c.metadata.get("tags", [])]


def _defined_names(source):
    return {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def test_every_notebook_gets_a_valid_student_copy(student_copies):
    assert set(student_copies) == {p.name for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        teacher = nbformat.read(path, as_version=4)
        student = nbformat.read(student_copies[path.name], as_version=4)
        nbformat.validate(student)
        assert [c.id for c in student.cells] == [c.id for c in teacher.cells]
        solutions = _solution_cells(teacher)
        assert 2 <= len(solutions) <= 5, f"{path.name} should have 2-5 exercises"
        for i, (t, s) in enumerate(zip(teacher.cells, student.cells)):
            if i in solutions:
                assert BANNER in s.source and "raise NotImplementedError" in s.source
                assert _defined_names(s.source) == _defined_names(t.source), (path.name, t.id)
                assert SOLUTION_TAG not in s.metadata["tags"]
            else:
                assert s.source == t.source, (path.name, t.id)


def _checker_call(nb, solution_index):
    """The `exercises.check_*(...)` call in the cells after a solution cell."""
    for cell in nb.cells[solution_index + 1:solution_index + 3]:
        for node in ast.walk(ast.parse(cell.source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "exercises"):
                return node
    raise AssertionError(f"no exercises.check_* call after cell {nb.cells[solution_index].id}")


def test_every_checker_rejects_the_stub_with_a_helpful_message(student_copies):
    checked = 0
    for path in NOTEBOOKS:
        student = nbformat.read(student_copies[path.name], as_version=4)
        for i in _solution_cells(nbformat.read(path, as_version=4)):
            namespace = {}
            exec(student.cells[i].source, namespace)  # defines the stub functions
            call = _checker_call(student, i)
            checker = getattr(exercises, call.func.attr)
            answer = namespace[call.args[0].id]
            others = [None] * (len(call.args) - 1)  # the stub is rejected before they are used
            with pytest.raises(exercises.ExerciseError, match="not answered yet"):
                checker(answer, *others)
            checked += 1
    assert checked >= 2 * len(NOTEBOOKS)


def test_solutions_pass_their_checkers_where_they_need_no_notebook_state():
    import torch

    def rotate_quarter(image, k):
        for _ in range(k % 4):
            image = image.transpose(-2, -1).flip(-2)
        return image

    assert exercises.check_rotate_quarter(rotate_quarter)

    def rotation_batch(images):
        return (torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)]),
                torch.arange(4).repeat_interleave(len(images)))

    assert exercises.check_rotation_batch(rotation_batch)

    def nt_xent(z, temperature):
        z = torch.nn.functional.normalize(z, dim=1)
        logits = z @ z.T / temperature
        logits.fill_diagonal_(float("-inf"))
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(z)) ^ 1)

    assert exercises.check_nt_xent(nt_xent)

    def unnormalised(z, temperature):
        return nt_xent(10 * z, temperature)  # scale-free: still right

    assert exercises.check_nt_xent(unnormalised)

    def keeps_itself(z, temperature):  # a view counted among its own candidates
        z = torch.nn.functional.normalize(z, dim=1)
        return torch.nn.functional.cross_entropy(z @ z.T / temperature, torch.arange(len(z)) ^ 1)

    with pytest.raises(exercises.ExerciseError, match=r"(?s)expected .*Hint:.*never its own"):
        exercises.check_nt_xent(keeps_itself)


def test_wrong_answers_get_a_message_that_says_what_differs():
    def clockwise(image, k):
        return image.rot90(-k, dims=(-2, -1))

    with pytest.raises(exercises.ExerciseError, match=r"k=1\).*differs at index.*\nHint:"):
        exercises.check_rotate_quarter(clockwise)

    def wrong_shape(train, test):
        return train[:, :2], test

    with pytest.raises(exercises.ExerciseError, match=r"has shape \(50, 2\), expected \(50, 4\)"):
        exercises.check_standardise(wrong_shape)


def test_stub_keeps_docstrings_and_replaces_plain_code():
    src = 'def f(x, *, y=2):\n    """Doc."""\n    return x + y\n\nanswer = 3\n'
    stub = stub_source(src)
    assert '"""Doc."""' in stub and "return x + y" not in stub and "answer" not in stub
    assert stub_source("answer = 3") == f"{BANNER}\nraise NotImplementedError"
    with pytest.raises(ValueError, match="does not parse"):
        stub_source("def broken(:")


# --- writing the copies loses nothing ----------------------------------------------------------


@pytest.fixture
def teachers(tmp_path):
    """A copy of the instructors' notebooks (tests never write next to the real ones)."""
    src = tmp_path / "notebooks"
    src.mkdir()
    for path in NOTEBOOKS[:2]:
        (src / path.name).write_bytes(path.read_bytes())
    return src


def _student_cli(capsys, *args) -> tuple[int, str, str]:
    from ssl_teach import cli

    status = cli.main(["student", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip()


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_student_copies_never_go_into_the_notebooks_folder(teachers, capsys):
    before = _snapshot(teachers)
    for out in (teachers, teachers / "student", teachers / "." / "sub" / ".."):
        status, _, err = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out),
                                      "--force")
        assert status == 2 and "would replace the instructors' solutions" in err
        assert "\n" not in err
    assert _snapshot(teachers) == before


def test_existing_files_are_replaced_only_with_force(teachers, tmp_path, capsys):
    out = tmp_path / "student"
    status, printed, _ = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out))
    assert status == 0 and "2 student notebooks written" in printed
    first = out / NOTEBOOKS[0].name
    first.write_text(first.read_text().replace("YOUR CODE HERE", "my own answer"))
    edited = first.read_bytes()
    status, _, err = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out))
    assert status == 2 and "already holds 2 of the student copies" in err and "--force" in err
    assert first.read_bytes() == edited  # nothing was overwritten
    status, _, _ = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out),
                                "--force")
    assert status == 0 and b"my own answer" not in first.read_bytes()


def test_force_removes_only_stale_copies_written_here(teachers, tmp_path, capsys):
    out = tmp_path / "student"
    write_student_copies(teachers, out)
    (out / "notes.txt").write_text("mine")
    (out / "my_notebook.ipynb").write_text(NOTEBOOKS[-1].read_text())  # not a student copy
    gone = sorted(teachers.glob("*.ipynb"))[1]
    gone.unlink()  # a notebook renamed or removed since the last copies
    status, printed, err = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out))
    assert status == 2 and "1 stale student copies" in err
    status, printed, _ = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out),
                                      "--force")
    assert status == 0 and f"removed 1 student copies of notebooks that no longer exist: " \
        f"{gone.name}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [NOTEBOOKS[0].name, "my_notebook.ipynb", "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"


def test_a_notebook_with_solutions_is_never_replaced(teachers, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    out.mkdir()
    backup = out / NOTEBOOKS[0].name
    backup.write_bytes(NOTEBOOKS[0].read_bytes())  # an instructor's copy kept there
    status, _, err = _student_cli(capsys, "--notebooks", str(teachers), "--out", str(out),
                                  "--force")
    assert status == 2 and "holds notebooks with solutions" in err
    assert backup.read_bytes() == NOTEBOOKS[0].read_bytes()
    assert not (out / NOTEBOOKS[1].name).exists()  # nothing written at all


def test_student_copies_are_marked_as_written_here(student_copies):
    from ssl_teach.classroom import MARKER, is_student_copy

    for name, path in student_copies.items():
        assert is_student_copy(path)
        assert nbformat.read(path, as_version=4).metadata[MARKER] == {"student_copy_of": name}
    assert not any(is_student_copy(p) for p in NOTEBOOKS)


def _module_file(name: str) -> Path | None:
    """The file of package module ``name`` (e.g. "ssl_teach.data.real"), if it is one."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, name: str):
    """(package modules, third-party top-level packages) imported anywhere in one module,
    inside functions too (the CLI imports its commands' modules late)."""
    import sys

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                found = [f"{base}.{node.module}" if node.module else base]
            else:
                found = [node.module]
            found += [f"{found[0]}.{a.name}" for a in node.names]  # `from . import module`
        else:
            continue
        for dotted in found:
            top = dotted.split(".")[0]
            if top == "ssl_teach":
                inside |= {dotted} if _module_file(dotted) else set()
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return inside, outside


def test_every_package_the_command_line_imports_is_a_core_dependency():
    """`python -m ssl_teach student` (nbformat) and the other commands work on a plain
    install: every third-party package that the modules the CLI reaches import is a core
    dependency."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    provided_by = {"PIL": "torchvision"}  # Pillow comes with torchvision, which requires it
    todo, seen, packages = ["ssl_teach.cli", "ssl_teach.__main__"], set(), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        inside, outside = _imports(_module_file(name), name)
        todo += sorted(inside)
        for top in outside:
            packages.setdefault(provided_by.get(top, top).lower(), name)
    assert {"ssl_teach.classroom", "ssl_teach.experiment", "ssl_teach.data.real"} <= seen
    # `book` needs its extra (Sphinx, MyST-NB, ...), and says how to install it when missing
    book_extra = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower().replace("-", "_")
                  for r in project["optional-dependencies"]["book"]}
    missing = {dist: module for dist, module in packages.items() if dist not in core
               and not (module == "ssl_teach.book" and dist in book_extra)}
    assert not missing, f"imported but not core dependencies (package: importing module): " \
        f"{missing}"
    assert "nbformat" in packages


def test_the_comparison_exercises_read_the_spread_and_the_chance_corrected_order():
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_results import fake_compare

    res = fake_compare()  # from scratch is above every task there: no task helps
    assert exercises.check_pretraining_helps(lambda: set(), res)
    with pytest.raises(exercises.ExerciseError, match=r"(?s)tasks that help.*gain over from "
                                                      r"scratch.*rotation -\d+\.0 ± 1\.4"):
        exercises.check_pretraining_helps(lambda: {"rotation"}, res)
    with pytest.raises(exercises.ExerciseError, match="not pretext tasks"):
        exercises.check_pretraining_helps(lambda: {"random"}, res)
    with pytest.raises(exercises.ExerciseError, match="set of task names"):
        exercises.check_pretraining_helps(lambda: "rotation", res)
    # every task at 90% pretext accuracy, one chance: the pretext score ties every pair the
    # probe ranks, so it does not put the same task ahead
    assert exercises.check_same_order(lambda: False, res)
    # pretext accuracies rising with the probe: the same order on every pair
    for i, t in enumerate(res["tasks"]):
        res["methods"][t]["pretext"] = {"accuracy": 0.5 + 0.1 * i, "chance": 0.25}
    assert exercises.check_same_order(lambda: True, res)
    # only the pairs the spread over training seeds ranks count: with the first two tasks
    # swapped by the pretext score, the answer depends on whether that pair is ranked
    first, second = res["tasks"][:2]
    res["methods"][first]["pretext"]["accuracy"] = 0.65
    spread = {"ranking": [{"pair": [second, first], "ranked": False},
                          {"pair": [res["tasks"][3], second], "ranked": True}]}
    assert exercises.check_same_order(lambda: False, res)  # every pair: the swap counts
    assert exercises.check_same_order(lambda: True, res, spread)  # the swapped pair is not ranked
    with pytest.raises(exercises.ExerciseError, match="same order"):
        exercises.check_same_order(lambda: False, res, spread)
    # a spread measured over more tasks than the comparison holds: only the comparison's count
    more = {"ranking": [*spread["ranking"], {"pair": ["contrastive", first], "ranked": True}]}
    assert exercises.ranked_pairs(res, more) == exercises.ranked_pairs(res, spread)


def test_a_prediction_is_checked_against_what_the_run_measured():
    gapped, touching = exercises.SWAP
    swap = {(gapped, gapped): 0.8, (gapped, touching): 0.6,
            (touching, touching): 0.8, (touching, gapped): 0.3}
    assert exercises.check_swap_prediction(lambda: "little", swap)
    with pytest.raises(exercises.ExerciseError, match=r"predicted 'most'; the run measured "
                                                      r"'little': 30\.0% of gapped"):
        exercises.check_swap_prediction(lambda: "most", swap)
    with pytest.raises(exercises.ExerciseError, match="return one of 'most', 'little'"):
        exercises.check_swap_prediction(lambda: "a lot", swap)


def test_the_crop_prediction_is_checked_against_both_numbers():
    runs = {"with crops": {"pretext": 0.5, "probe": 0.6},
            "without crops": {"pretext": 0.9, "probe": 0.4}}
    assert exercises.check_crop_prediction(lambda: ("higher", "lower"), runs, 0.1)
    assert exercises.check_crop_prediction(lambda: ("higher", "within the spread"), runs, 0.25)
    with pytest.raises(exercises.ExerciseError, match=r"predicted \('higher', 'higher'\); the "
                                                      r"run measured \('higher', 'lower'\)"):
        exercises.check_crop_prediction(lambda: ("higher", "higher"), runs, 0.1)
    with pytest.raises(exercises.ExerciseError, match="return a pair"):
        exercises.check_crop_prediction(lambda: "higher", runs, 0.1)
    with pytest.raises(exercises.ExerciseError, match="return a pair"):
        exercises.check_crop_prediction(lambda: ("within the spread", "lower"), runs, 0.1)


def test_a_change_is_about_the_same_within_three_points_or_the_spread():
    assert exercises.change_word(0.50, 0.52) == "about the same"
    assert exercises.change_word(0.50, 0.56) == "up" and exercises.change_word(0.5, 0.4) == "down"
    assert exercises.change_word(0.50, 0.56, spread=0.08) == "about the same"
    before, after = {"pretext": 0.97, "probe": 0.66}, {"pretext": 0.97, "probe": 0.43}
    def tilted():
        return ("about the same", "down")

    assert exercises.check_change_prediction(tilted, before, after, {"probe": 0.01})
    with pytest.raises(exercises.ExerciseError, match=r"measured \('about the same', 'down'\)"
                                                      r".*probe 66\.0% -> 43\.0%"):
        exercises.check_change_prediction(lambda: ("down", "down"), before, after)
    with pytest.raises(exercises.ExerciseError, match="return a pair"):
        exercises.check_change_prediction(lambda: ("lower", "down"), before, after)
    spreads = exercises.seed_spreads("rotation")  # from the committed record
    assert set(spreads) == {"pretext", "probe"} and all(v >= 0 for v in spreads.values())
    assert exercises.seed_spreads("rotation", dataset="cifar10") == {}


def test_the_other_predictions_are_checked_against_their_runs():
    from ssl_teach.probe import ProbeResult

    blocks = {"block1": 0.5, "block2": 0.6, "block3": 0.7, "block4": 0.68}
    val = {"block1": 0.5, "block2": 0.6, "block3": 0.66, "block4": 0.69}  # chosen: block4
    results = {"rotation": ProbeResult(linear=blocks, knn=blocks, l2=blocks, val=val)}
    assert exercises.check_best_block_prediction(lambda: "block4", results)
    with pytest.raises(exercises.ExerciseError, match=r"predicted 'block3'; the run measured "
                                                      r"'block4': test accuracy block1 50\.0%"):
        exercises.check_best_block_prediction(lambda: "block3", results)
    with pytest.raises(exercises.ExerciseError, match="return one of 'block1', 'block2'"):
        exercises.check_best_block_prediction(lambda: 3, results)

    stats = {"greedy, average (default)": {"min": 2.0, "mean": 8.08},
             "random": {"min": 3.0, "mean": 7.99}}
    assert exercises.check_closest_pair_prediction(lambda: "closer", stats)
    with pytest.raises(exercises.ExerciseError, match=r"measured 'closer': the closest pair "
                                                      r"differs in 2 positions"):
        exercises.check_closest_pair_prediction(lambda: "further", stats)
    same = {**stats, "random": {"min": 2.0, "mean": 7.99}}
    assert exercises.check_closest_pair_prediction(lambda: "as close", same)

    assert exercises.check_row_or_column_prediction(lambda: "row", {"row": 0.72, "column": 0.47})
    assert exercises.check_row_or_column_prediction(lambda: "equally",
                                                    {"row": 0.50, "column": 0.47})
    with pytest.raises(exercises.ExerciseError, match=r"measured 'column': row 40%, column 52%"):
        exercises.check_row_or_column_prediction(lambda: "row", {"row": 0.40, "column": 0.52})


def test_the_mirror_diagnosis_is_judged_by_held_out_accuracy_above_chance():
    assert exercises.check_mirror_prediction(lambda: "no", 0.52)
    assert exercises.check_mirror_prediction(lambda: "yes", 0.75)
    limit = 0.5 + exercises.MIRROR_LEARNED
    assert exercises.check_mirror_prediction(lambda: "no", limit)  # not *more* than the margin
    with pytest.raises(exercises.ExerciseError, match=r"predicted 'yes'; the run measured 'no': "
                                                      r"held-out accuracy 52\.0%"):
        exercises.check_mirror_prediction(lambda: "yes", 0.52)
    with pytest.raises(exercises.ExerciseError, match="return one of 'yes', 'no'"):
        exercises.check_mirror_prediction(lambda: True, 0.52)


def test_the_rotation_ablation_prediction_names_the_easiest_task_and_the_worst_probe():
    ablation = {2: {"pretext": 0.99, "probe": 0.54}, 4: {"pretext": 0.97, "probe": 0.70},
                8: {"pretext": 0.95, "probe": 0.72}}
    assert exercises.check_rotation_ablation_prediction(lambda: (2, 2), ablation)
    with pytest.raises(exercises.ExerciseError, match=r"worst probe.*predicted 8; the run "
                                                      r"measured 2"):
        exercises.check_rotation_ablation_prediction(lambda: (2, 8), ablation)
    with pytest.raises(exercises.ExerciseError, match=r"easiest pretext task.*predicted 8"):
        exercises.check_rotation_ablation_prediction(lambda: (8, 2), ablation)
    with pytest.raises(exercises.ExerciseError, match="return a pair"):
        exercises.check_rotation_ablation_prediction(lambda: 2, ablation)
    with pytest.raises(exercises.ExerciseError, match="return one of 2, 4, 8"):
        exercises.check_rotation_ablation_prediction(lambda: ("2", 2), ablation)


def test_the_annealed_mean_checker_takes_the_formula_and_names_the_usual_mistake():
    import torch

    def annealed_mean(logits, centres, temperature):
        q = torch.softmax(torch.log_softmax(logits, 1) / temperature, 1)
        return torch.einsum("nqhw,qc->nchw", q, centres)

    assert exercises.check_annealed_mean(annealed_mean)

    def unsharpened(logits, centres, temperature):  # the plain mean at every temperature
        return annealed_mean(logits, centres, 1.0)

    with pytest.raises(exercises.ExerciseError, match=r"(?s)temperature 0.38.*Hint:.*log p / T"):
        exercises.check_annealed_mean(unsharpened)
