"""Student copies of the notebooks, generated from the instructors' notebooks.

The notebooks in ``notebooks/`` are the instructors' copies: every exercise's answer cell holds a
worked solution and carries the cell tag ``solution``. :func:`write_student_copies` writes a
student copy of each in which every tagged cell is replaced by a stub — the same function
signatures and docstrings, a ``# YOUR CODE HERE`` banner and ``raise NotImplementedError`` —
and everything else is kept. Nobody keeps two copies in sync by hand; ``make student`` makes
them, and the tests check them.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import nbformat

from .cache import atomic_write_text

SOLUTION_TAG = "solution"
BANNER = "# YOUR CODE HERE"


def stub_source(source: str) -> str:
    """The stub of a solution cell: each top-level function keeps its signature and docstring
    and gets a banner and ``raise NotImplementedError`` as its body; any other code becomes the
    banner and the raise."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"solution cell does not parse ({err}); fix it before making stubs"
                         ) from None
    lines = source.splitlines()
    functions = [node for node in tree.body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not functions:
        return f"{BANNER}\nraise NotImplementedError"
    parts = []
    for fn in functions:
        first_body = fn.body[0]
        keep_until = first_body.lineno - 1  # the header (decorators, def line, continuation)
        start = (fn.decorator_list[0].lineno if fn.decorator_list else fn.lineno) - 1
        header = lines[start:keep_until]
        indent = " " * first_body.col_offset
        body = []
        if (isinstance(first_body, ast.Expr) and isinstance(first_body.value, ast.Constant)
                and isinstance(first_body.value.value, str)):
            body = lines[first_body.lineno - 1:first_body.end_lineno]  # the docstring
        parts.append("\n".join([*header, *body, f"{indent}{BANNER}",
                                f"{indent}raise NotImplementedError"]))
    return "\n\n\n".join(parts)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with every ``solution``-tagged cell replaced by its stub."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = stub_source(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG] + [
                "exercise"]
    return out


def write_student_copies(src: Path, out: Path) -> list[Path]:
    """Write the student copy of every notebook in ``src`` to ``out``; returns the paths."""
    src, out = Path(src), Path(out)
    paths = sorted(src.glob("*.ipynb"))
    if not paths:
        raise ValueError(f"no notebooks found in {src}")
    written = []
    for path in paths:
        nb = student_notebook(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        target = out / path.name
        atomic_write_text(target, nbformat.writes(nb) + "\n")
        written.append(target)
    return written
