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
        assert 2 <= len(solutions) <= 4, f"{path.name} should have 2-4 exercises"
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
