"""Student copies of the notebooks, generated from the instructors' notebooks.

The notebooks in ``notebooks/`` are the instructors' copies: every exercise's answer cell holds a
worked solution and carries the cell tag ``solution``. :func:`write_student_copies` writes a
student copy of each in which every tagged cell is replaced by a stub — the same function
signatures and docstrings, a ``# YOUR CODE HERE`` banner and ``raise NotImplementedError`` —
and everything else is kept. Nobody keeps two copies in sync by hand; ``make student`` makes
them, and the tests check them. Writing them never loses work: the instructors' folder is never
the output, and existing files are replaced only when asked (``--force``).
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import nbformat

from .cache import atomic_write_text

SOLUTION_TAG = "solution"
BANNER = "# YOUR CODE HERE"
MARKER = "ssl_teach"
"""The notebook metadata key that marks a student copy written here."""


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


def student_notebook(nb: nbformat.NotebookNode, name: str | None = None
                     ) -> nbformat.NotebookNode:
    """A copy of ``nb`` with every ``solution``-tagged cell replaced by its stub, marked in its
    metadata as the student copy of notebook ``name`` (so that a later run knows it wrote it)."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = stub_source(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG] + [
                "exercise"]
    if name is not None:
        out.metadata[MARKER] = {"student_copy_of": name}
    return out


def _read(path: Path) -> nbformat.NotebookNode | None:
    """The notebook at ``path``, or None when it is not a readable notebook."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception:  # not JSON, not a notebook, unreadable: in any case not one of ours
        return None


def is_student_copy(path: Path) -> bool:
    """Whether ``path`` is a student copy written by :func:`write_student_copies`."""
    nb = _read(path)
    return nb is not None and MARKER in nb.metadata


def _has_solutions(path: Path) -> bool:
    nb = _read(path)
    return nb is not None and any(
        SOLUTION_TAG in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def stale_copies(src: Path, out: Path) -> list[Path]:
    """Student copies in ``out`` written before for notebooks that ``src`` no longer has."""
    src, out = Path(src), Path(out)
    if not out.is_dir():
        return []
    names = {p.name for p in src.glob("*.ipynb")}
    return sorted(p for p in out.glob("*.ipynb")
                  if p.name not in names and p.is_file() and is_student_copy(p))


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def write_student_copies(src: Path, out: Path, *, force: bool = False) -> list[Path]:
    """Write the student copy of every notebook in ``src`` to ``out``; returns the paths.

    Nothing the user has is lost: ``out`` may not be ``src`` or inside it (the copies would
    replace the solutions); files already in ``out`` are replaced only with ``force``, and
    never a notebook that holds solutions. With ``force``, the student copies written before
    for notebooks that ``src`` no longer has are removed (see :func:`stale_copies`); other
    files are never touched.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ValueError(f"the notebooks folder {src} does not exist or is not a folder; "
                         "point --notebooks to the instructors' notebooks")
    paths = sorted(src.glob("*.ipynb"))
    if not paths:
        raise ValueError(f"no notebooks found in {src}")
    if _within(out, src):
        raise ValueError(f"--out {out} is the notebooks folder {src} or inside it: the "
                         "student copies would replace the instructors' solutions; choose "
                         "another folder, such as build/student")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the student copies")
    targets = [out / p.name for p in paths]
    folders = [t for t in targets if t.is_dir()]
    if folders:
        raise ValueError(f"{', '.join(map(str, folders))}: a folder where a student copy "
                         "goes; rename it or choose another --out")
    existing = [t for t in targets if t.exists()]
    teachers = [t for t in existing if not is_student_copy(t) and _has_solutions(t)]
    if teachers:
        raise ValueError(
            f"{out} holds notebooks with solutions ({', '.join(t.name for t in teachers)}); "
            "they look like instructors' notebooks, so they are not replaced even with "
            "--force: move them away, or choose another --out")
    stale = stale_copies(src, out)
    if (existing or stale) and not force:
        more = f" and {len(stale)} stale student copies" if stale else ""
        raise ValueError(
            f"{out} already holds {len(existing)} of the student copies{more} "
            f"({', '.join(p.name for p in [*existing, *stale][:4])}"
            f"{', ...' if len(existing) + len(stale) > 4 else ''}); add --force to replace "
            "them (force=True in Python), or choose an empty folder")
    # every copy is made before anything is written: a solution that does not parse fails
    # with the folder untouched
    copies = []
    for path in paths:
        nb = student_notebook(nbformat.read(path, as_version=4), name=path.name)
        nbformat.validate(nb)
        copies.append((out / path.name, nbformat.writes(nb) + "\n"))
    written = []
    for target, text in copies:
        atomic_write_text(target, text)
        written.append(target)
    for path in stale:
        path.unlink(missing_ok=True)
    return written
