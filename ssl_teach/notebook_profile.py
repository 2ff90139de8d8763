"""Where a notebook's seconds go: ``python -m ssl_teach.notebook_profile`` (``make
profile-notebooks``).

Each notebook runs once, in order, in a fresh kernel of this Python, with a fresh checkpoint
cache shared by the notebooks of the run (as under ``make test``, where later notebooks reuse
what earlier ones trained). Every second of every code cell goes to one stage:

- the package's own work, measured inside the kernel by timers around its entry points:
  ``data`` (:func:`ssl_teach.data.load_dataset`), ``pretext`` (:func:`ssl_teach.train.train`
  of a pretext task, cache hits included), ``baselines`` (the same for the supervised
  baseline, also on few labels), ``eval`` (:func:`ssl_teach.train.predict`, behind every
  pretext accuracy), ``features`` (:func:`ssl_teach.probe.extract_features`) and ``fits``
  (the probes' logistic regressions and k-NN);
- the rest of each cell by what the cell shows: ``widgets`` (it makes a widget), ``plots`` (it
  draws a figure), ``other`` (imports, prints, checks, inline code).

A call inside another timed call counts once, for the outer one (the prediction inside a
training run belongs to the training). Kernel start-up is reported apart, as nbval does not
count it either.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("data", "pretext", "baselines", "eval", "features", "fits", "plots", "widgets",
          "other")
"""Every stage, in the order of the table."""

LOG_ENV = "SSL_TEACH_STAGE_LOG"
"""Environment variable naming the file the kernel's timers append to (one JSON per call)."""

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def install_stage_timers(log_path: str | os.PathLike) -> None:
    """Wrap the package's entry points so that each outermost call appends
    ``{"stage", "seconds"}`` to ``log_path``. Run it in a fresh kernel before the notebook
    imports anything from ``ssl_teach``: modules imported later take the wrapped functions."""
    from . import data, probe
    from . import train as train_module

    depth = [0]

    def timed(stage_of):
        def wrap(fn):
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                depth[0] += 1
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        record = {"stage": stage_of(*args, **kwargs),
                                  "seconds": time.perf_counter() - t0}
                        with open(log_path, "a") as f:
                            f.write(json.dumps(record) + "\n")
            return inner
        return wrap

    def training_stage(*args, **kwargs):
        task = args[0] if args else kwargs.get("task")
        return "baselines" if isinstance(task, train_module.SupervisedTask) else "pretext"

    for module, name, stage in ((data, "load_dataset", "data"),
                                (train_module, "train", training_stage),
                                (train_module, "predict", "eval"),
                                (probe, "extract_features", "features"),
                                (probe, "fit_logistic", "fits"),
                                (probe, "knn_accuracy", "fits")):
        stage_of = stage if callable(stage) else (lambda *a, _s=stage, **k: _s)
        setattr(module, name, timed(stage_of)(getattr(module, name)))


def cell_stage(cell) -> str:
    """The stage of a code cell's own time (what the timers did not measure): "widgets",
    "plots" or "other", from its source and outputs."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    outputs = cell.get("outputs", [])
    if "widgets." in source or any(_WIDGET_MIME in o.get("data", {}) for o in outputs):
        return "widgets"
    if any(k in source for k in ("viz.", "plt.", "fig,", "fig =")) or any(
            "image/png" in o.get("data", {}) for o in outputs):
        return "plots"
    return "other"


def _read_new(log: Path, done: int) -> tuple[list[dict], int]:
    """The records appended to ``log`` after the first ``done`` lines, and the new count."""
    if not log.exists():
        return [], done
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines[done:] if line.strip()], len(lines)


def _kernel_manager():
    """A kernel manager whose kernel is this Python (as nbval's --nbval-current-env)."""
    import ipykernel.kernelspec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    return KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def profile_notebook(path: str | os.PathLike, *, timeout: int = 900) -> dict:
    """Run one notebook in a fresh kernel and split its cells' seconds into stages:
    {"notebook", "stages": {stage: seconds}, "total", "kernel_start", "cells": [...],
    "error"}. The checkpoint cache is whatever ``SSL_TEACH_CACHE`` says."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "stages.jsonl"
        client = NotebookClient(nb, km=_kernel_manager(), timeout=timeout,
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        stages = dict.fromkeys(STAGES, 0.0)
        cells, error, done = [], None, 0
        t0 = time.perf_counter()
        # the timers go in first, as a cell of the in-memory copy (the file is not changed)
        nb.cells.insert(0, nbformat.v4.new_code_cell(
            "from ssl_teach.notebook_profile import install_stage_timers\n"
            f"install_stage_timers({str(log)!r})"))
        with client.setup_kernel():
            client.execute_cell(nb.cells[0], 0, store_history=False)
            kernel_start = time.perf_counter() - t0
            for index, cell in enumerate(nb.cells):
                if index == 0 or cell.cell_type != "code":
                    continue
                start = time.perf_counter()
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as err:
                    error = f"cell {cell.get('id', index)}: {str(err).strip().splitlines()[-1]}"
                seconds = time.perf_counter() - start
                records, done = _read_new(log, done)
                split = dict.fromkeys(STAGES, 0.0)
                for r in records:
                    split[r["stage"]] += r["seconds"]
                # the rest of the cell: its own code; never negative (timer rounding)
                split[cell_stage(cell)] += max(0.0, seconds - sum(split.values()))
                for k, v in split.items():
                    stages[k] += v
                cells.append({"id": cell.get("id", str(index)), "seconds": seconds,
                              "stages": {k: v for k, v in split.items() if v > 0}})
                if error:
                    break
    return {"notebook": path.name, "stages": stages, "total": sum(c["seconds"] for c in cells),
            "kernel_start": kernel_start, "cells": cells, "error": error}


def profile_notebooks(paths, *, timeout: int = 900, cache: str | os.PathLike | None = None,
                      progress=print) -> list[dict]:
    """:func:`profile_notebook` for every notebook in order, sharing one checkpoint cache:
    ``cache`` (a folder), else a fresh temporary one removed afterwards."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"no notebook at {p}")
    saved = {k: os.environ.get(k) for k in ("SSL_TEACH_CACHE", "MPLBACKEND")}
    results = []
    with tempfile.TemporaryDirectory() as fresh:
        # the kernels inherit this environment
        os.environ["SSL_TEACH_CACHE"] = str(cache or fresh)
        os.environ["MPLBACKEND"] = saved["MPLBACKEND"] or "Agg"
        try:
            for p in paths:
                res = profile_notebook(p, timeout=timeout)
                results.append(res)
                if progress:
                    progress(f"{p.name}: {res['total']:.1f} s"
                             + (f" (stopped: {res['error']})" if res["error"] else ""))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return results


def format_profile(results: list[dict], *, slowest: int = 3) -> str:
    """Seconds per stage per notebook, then each notebook's slowest cells split by stage."""
    head = f"{'notebook':<36}" + "".join(f"{s:>10}" for s in STAGES) + f"{'total':>9}"
    lines = ["seconds per stage (sums of cell times, as nbval counts them)", head,
             "-" * len(head)]
    for r in results:
        lines.append(f"{r['notebook']:<36}" + "".join(f"{r['stages'][s]:>10.1f}"
                                                      for s in STAGES) + f"{r['total']:>9.1f}")
    if len(results) > 1:
        lines.append(f"{'all':<36}" + "".join(
            f"{sum(r['stages'][s] for r in results):>10.1f}" for s in STAGES)
            + f"{sum(r['total'] for r in results):>9.1f}")
    lines.append("")
    lines.append("kernel start-up (not counted above): " + ", ".join(
        f"{r['notebook']} {r['kernel_start']:.1f} s" for r in results))
    for r in results:
        if r["error"]:
            lines.append(f"{r['notebook']} STOPPED at {r['error']}")
        top = sorted(r["cells"], key=lambda c: -c["seconds"])[:slowest]
        lines.append(f"{r['notebook']} slowest cells: " + "; ".join(
            f"{c['id']} {c['seconds']:.1f} s (" + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(c["stages"].items(), key=lambda kv: -kv[1]))
            + ")" for c in top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssl_teach.notebook_profile",
        description="Run every notebook once (in order, fresh kernels, one fresh checkpoint "
                    "cache) and print the seconds per stage: data, pretext training, "
                    "baselines, pretext evaluation, probe features, probe fits, plots, "
                    "widgets and the rest.")
    parser.add_argument("notebooks", nargs="+", type=Path, help="the notebooks, in order")
    parser.add_argument("--cache", type=Path, default=None,
                        help="checkpoint cache folder to use (default: a fresh temporary one, "
                             "as make test does)")
    parser.add_argument("--timeout", type=int, default=900,
                        help="seconds one cell may take (default: 900, as make test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the results as JSON to this file (written atomically)")
    args = parser.parse_args(argv)
    try:
        results = profile_notebooks(args.notebooks, timeout=args.timeout, cache=args.cache)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_profile(results))
    if args.out:
        from .cache import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.out}")
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
