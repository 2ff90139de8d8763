"""Committed results of the long runs (``compare``, ``compare --train-seeds``, ``sweep``,
``vary``), with their provenance.

A *record* is one JSON file in this folder (shipped as package data, so the notebooks can plot
it wherever the package is installed)::

    {"format": 1, "kind": "compare" | "seeds" | "sweep" | "vary", "name": "compare-quick-scenes",
     "provenance": {"date", "machine", "arithmetic", "command", "package_version",
                    "fingerprint"},
     "config": the configuration the fingerprint is the hash of,
     "results": what compare() / seed_spread() / sweep() / vary() returned}

The *configuration* holds everything in the code that decides the numbers and can be read
without running anything: the profile (data counts, backbone, budgets), every task's options,
the fine-tuning recipe, the probe's settings, the label counts and seeds. :func:`check` rebuilds
it from the current code and fails, naming what changed, when it no longer matches: a stale
table cannot survive a change of configuration. :func:`markdown` turns a record into the
README's tables, between ``<!-- results: NAME -->`` and ``<!-- /results -->`` markers.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
from pathlib import Path

import torch

from ..cache import atomic_write_text, config_key

RESULTS_DIR = Path(__file__).resolve().parent
"""This folder: where the committed records live."""

FORMAT = 1
KINDS = ("compare", "seeds", "sweep", "vary")


class StaleRecord(ValueError):
    """A committed record no longer matches the code's configuration."""


# --- the configuration and its fingerprint ----------------------------------------------------


def _profile_config(profile) -> dict:
    prof = dataclasses.asdict(profile)
    prof.pop("workers", None)  # changes the speed, never the numbers
    return prof


def _dataset_config(name: str, profile) -> dict:
    if name == "scenes":  # rendered by the package: its generator settings decide the images
        from ..data.scenes import SceneConfig

        return {"name": name, "scene": dataclasses.asdict(SceneConfig(size=profile.image_size))}
    return {"name": name}


def configuration(kind: str, *, profile="quick", dataset: str = "scenes", tasks=None,
                  seeds=(0, 1, 2), train_seed: int = 0, sizes=None, finetune_sizes=None,
                  multipliers=None, size=None, train_seeds=None, task=None,
                  options=None) -> dict:
    """The configuration of a ``compare``, ``seeds`` (``compare --train-seeds``), ``sweep`` or
    ``vary`` run with these parameters, read from the current code: the JSON-able dict whose
    hash is a record's fingerprint."""
    from .. import experiment, finetune, probe, train
    from ..pretext import TASKS
    from ..profiles import get_profile

    if kind not in KINDS:
        raise ValueError(f"unknown kind of record {kind!r}; choose one of: {', '.join(KINDS)}")
    prof = get_profile(profile) if isinstance(profile, str) else profile
    tasks = list(TASKS) if tasks is None else list(tasks)
    if kind == "vary":
        from ..vary import TRAIN_SEEDS

        tasks = [task]
        params = {"profile": prof.name, "dataset": dataset, "task": task,
                  "options": {k: list(v) for k, v in (options or {}).items()},
                  "train_seeds": list(TRAIN_SEEDS if train_seeds is None else train_seeds)}
    elif kind == "seeds":
        from ..compare import TRAIN_SEEDS

        params = {"profile": prof.name, "dataset": dataset, "tasks": tasks,
                  "train_seeds": list(TRAIN_SEEDS if train_seeds is None else train_seeds)}
    else:
        params = {"profile": prof.name, "dataset": dataset, "tasks": tasks,
                  "seeds": list(seeds), "train_seed": train_seed}
    if kind == "compare":
        from ..compare import LABELS_PER_CLASS

        params["sizes"] = [str(s) for s in (LABELS_PER_CLASS if sizes is None else sizes)]
        params["finetune_sizes"] = (params["sizes"] if finetune_sizes is None
                                    else [str(s) for s in finetune_sizes])
    elif kind == "sweep":
        from ..sweep import MULTIPLIERS, SWEEP_LABELS

        params["multipliers"] = list(MULTIPLIERS if multipliers is None else multipliers)
        params["size"] = SWEEP_LABELS if size is None else size
    return {
        "kind": kind, "params": params,
        "profile": _profile_config(prof), "data": _dataset_config(dataset, prof),
        "tasks": {t: prof.task(t).options() for t in tasks},  # with the profile's options
        "supervised": dataclasses.asdict(train.SupervisedTask()),
        "checkpoint_format": train.CHECKPOINT_FORMAT,
        "probe": {"version": experiment.PROBE_VERSION, "l2_grid": list(probe.L2_GRID),
                  "min_validation_per_class": probe.MIN_VALIDATION_PER_CLASS,
                  "max_iter": probe.MAX_ITER},
        "finetune": {"version": finetune.FINETUNE_VERSION,
                     "recipe": dataclasses.asdict(finetune.recipe(prof))},
    }


def fingerprint(config: dict) -> str:
    """The hash of a configuration (equal configurations, equal fingerprints)."""
    return config_key(config)


# --- writing and reading records --------------------------------------------------------------


def machine() -> str:
    """A one-line description of this machine: CPU (or GPU), cores, OS, Python and torch."""
    cpu = platform.processor() or platform.machine()
    parts = [f"{platform.machine()} {cpu}".strip() if cpu != platform.machine()
             else platform.machine(), f"{os.cpu_count()} cores",
             f"{torch.get_num_threads()} torch threads"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    parts += [f"{platform.system()} {platform.release()}",
              f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    return ", ".join(parts)


def arithmetic(precision: str = "auto") -> str:
    """What decides a run's last digits on this machine, for ``precision``: the CPU kernels
    torch chose (its CPU capability), the type training and inference compute in, the GPU if
    there is one, and torch's version. Two machines with the same arithmetic give the same
    numbers for the same seed; others differ in the last digits, or more."""
    from ..train import autocast_dtype, precision_name, select_device

    device = select_device("auto")
    parts = [f"CPU kernels {torch.backends.cpu.get_cpu_capability()}",
             f"computes in {precision_name(autocast_dtype(precision, device))}"]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    return ", ".join(parts + [f"torch {torch.__version__}"])


def same_arithmetic(record: dict) -> bool:
    """Whether ``record`` was measured with this machine's arithmetic (:func:`arithmetic`), so
    that a run with the record's seed here must give the record's numbers."""
    precision = record["config"]["profile"].get("precision", "auto")
    return record["provenance"].get("arithmetic") == arithmetic(precision)


def package_version() -> str:
    from .. import __version__

    return __version__


def record_name(kind: str, results: dict) -> str:
    """The file name (without .json) of a record: ``KIND-PROFILE-DATASET``
    (``vary-TASK-PROFILE-DATASET`` for a task's settings)."""
    if kind == "vary":
        return f"{kind}-{results['task']}-{results['profile']}-{results['dataset']}"
    return f"{kind}-{results['profile']}-{results['dataset']}"


def params_of(kind: str, results: dict) -> dict:
    """The parameters of :func:`configuration` that produced ``results``."""
    if kind == "seeds":
        return {k: results[k] for k in ("profile", "dataset", "tasks", "train_seeds")}
    if kind == "vary":
        return {k: results[k] for k in ("profile", "dataset", "task", "options", "train_seeds")}
    out = {k: results[k] for k in ("profile", "dataset", "tasks", "seeds", "train_seed")}
    if kind == "compare":
        out["sizes"] = results["sizes"]
        out["finetune_sizes"] = results.get("finetune_sizes", results["sizes"])
    else:
        out["multipliers"], out["size"] = results["multipliers"], results["size"]
    return out


def make_record(kind: str, results: dict, *, command: str, profile=None) -> dict:
    """A record of ``results`` (what compare(), sweep() or vary() returned) with its provenance.
    ``profile``: the Profile object the run used, when not one of the named profiles."""
    params = params_of(kind, results)
    if profile is not None:
        params["profile"] = profile
    config = configuration(kind, **params)
    return {"format": FORMAT, "kind": kind, "name": record_name(kind, results),
            "provenance": {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "machine": machine(), "arithmetic": arithmetic(config["profile"]["precision"]),
                "command": command,
                "package_version": package_version(), "fingerprint": fingerprint(config)},
            "config": config, "results": results}


def write_record(kind: str, results: dict, *, command: str, folder: Path | None = None,
                 profile=None) -> Path:
    """Write the record of ``results`` atomically into ``folder`` (default: this package's
    results folder) as ``KIND-PROFILE-DATASET.json``; returns its path."""
    rec = make_record(kind, results, command=command, profile=profile)
    path = Path(folder or RESULTS_DIR) / f"{rec['name']}.json"
    atomic_write_text(path, json.dumps(rec, indent=1, sort_keys=False) + "\n")
    return path


def committed(folder: Path | None = None) -> list[Path]:
    """The record files in ``folder`` (default: the committed ones), sorted by name."""
    return sorted(Path(folder or RESULTS_DIR).glob("*.json"))


def load(name_or_path) -> dict:
    """A record, by path or by name in the committed folder ("compare-quick-scenes")."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RESULTS_DIR / f"{name_or_path}.json"
    if not path.exists():
        have = ", ".join(p.stem for p in committed()) or "none"
        raise ValueError(f"no record {str(name_or_path)!r} (committed records: {have}); write "
                         "one with `python -m ssl_teach compare --record` (with "
                         "--train-seeds for the spread over training seeds), `sweep --record` "
                         "or `vary TASK --option NAME=VALUES --record`")
    try:
        rec = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"record {path} is not valid JSON ({err})") from None
    missing = {"format", "kind", "provenance", "config", "results"} - set(rec)
    if missing or rec.get("kind") not in KINDS:
        raise ValueError(f"{path} is not a results record (missing: {sorted(missing)}, kind "
                         f"{rec.get('kind')!r})")
    return rec


def _differences(old, new, where: str = "") -> list[str]:
    """Where two JSON-like values differ, as 'path: old -> new' lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k not in old:
                out.append(f"{where}{k}: (absent) -> {new[k]!r}")
            elif k not in new:
                out.append(f"{where}{k}: {old[k]!r} -> (absent)")
            else:
                out += _differences(old[k], new[k], f"{where}{k}.")
        return out
    if old != new:
        return [f"{where.rstrip('.')}: {old!r} -> {new!r}"]
    return []


def check(record) -> dict:
    """Raise :class:`StaleRecord` when ``record`` (a dict, path or name) does not match the
    configuration of the current code, saying what changed; return the record otherwise."""
    rec = record if isinstance(record, dict) else load(record)
    name = rec.get("name", "record")
    stored = rec["config"]
    if fingerprint(stored) != rec["provenance"]["fingerprint"]:
        raise StaleRecord(f"{name}: its configuration does not hash to its fingerprint "
                          "(edited by hand?); run it again")
    current = configuration(rec["kind"], **stored["params"])
    if fingerprint(current) != rec["provenance"]["fingerprint"]:
        diff = _differences(stored, json.loads(json.dumps(current)))  # tuples read as lists
        raise StaleRecord(
            f"{name} was measured with another configuration than the current code's; run "
            f"`{rec['provenance']['command']}` again and commit the new file. What changed: "
            + "; ".join(diff[:12]) + (f"; and {len(diff) - 12} more" if len(diff) > 12 else ""))
    return rec


# --- README tables ------------------------------------------------------------------------


def _pm(v: dict) -> str:
    if len(v["runs"]) == 1:
        return f"{100 * v['mean']:.1f}"
    return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"


def _provenance_line(rec: dict) -> str:
    p = rec["provenance"]
    return (f"Measured {p['date'][:10]} on {p['machine']} with `{p['command']}` "
            f"(ssl_teach {p['package_version']}, configuration {p['fingerprint']}; file "
            f"`ssl_teach/results/{rec['name']}.json`).")


def _compare_markdown(res: dict) -> list[str]:
    from ..finetune import counts_that_help

    methods = res["methods"]
    blocks = list(next(iter(methods.values()))["linear"])
    lines = ["| linear probe, all labels | " + " | ".join(blocks)
             + " | best (chosen on validation) | k-NN | pretext (chance) |",
             "|---" * (len(blocks) + 4) + "|"]
    for name, m in methods.items():
        best, pre = m["best_block"], m["pretext"]
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * m['linear'][b]:.1f}" for b in blocks)
            + f" | {100 * m['linear'][best]:.1f} ({best}) | {100 * m['knn'][best]:.1f} | "
            + (f"{100 * pre['accuracy']:.1f} ({100 * pre['chance']:.1f})" if pre else "–")
            + " |")
    sizes = res["sizes"]
    for title, key in (("linear probe", "label_efficiency"), ("fine-tuned", "finetune")):
        if not any(m.get(key) for m in methods.values()):
            continue  # not measured (compare with finetune_sizes=())
        lines += ["", f"| {title}, labels per class | " + " | ".join(sizes) + " |",
                  "|---" * (len(sizes) + 1) + "|"]
        for name, m in methods.items():
            label = "random (= from scratch)" if key == "finetune" and name == "random" else name
            cells = [_pm(m[key][s]) if s in m.get(key, {}) else "–" for s in sizes]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    helps = res.get("pretraining_helps") or {}
    if helps:
        lines += ["", "| fine-tuned from | pretraining helps up to (labels per class) | "
                  "helps beyond the spread at |", "|---|---|---|"]
        for name, h in helps.items():
            up = h["up_to"]
            text = (f"none (not even at {sizes[0]})" if up is None
                    else "every count measured" if up == "all" else str(up))
            at = ", ".join(counts_that_help(h)) or "none"
            lines.append(f"| {name} | {text} | {at} |")
    return lines


def _sweep_markdown(res: dict) -> list[str]:
    s = res["scratch"]
    lines = [f"| task | budget | pretext | probe (block) | fine-tuned, {res['size']} labels "
             f"per class (from scratch: {_pm(s)}) |", "|---|---|---|---|---|"]
    for name, rows in res["runs"].items():
        for r in rows:
            lines.append(
                f"| {name} | ×{r['multiplier']} ({r['budget_samples']:,} samples) | "
                f"{100 * r['pretext']['accuracy']:.1f} | {100 * r['probe']['linear']:.1f} "
                f"({r['probe']['best_block']}) | {_pm(r['finetune'])} |")
    return lines


def _seeds_markdown(res: dict) -> list[str]:
    lines = [f"| method | probe, best block (mean ± std over training seeds "
             f"{', '.join(map(str, res['train_seeds']))}) | blocks chosen | pretext |",
             "|---|---|---|---|"]
    for name, m in res["methods"].items():
        lines.append(f"| {name} | {_pm(m['probe'])} | {', '.join(m['blocks'])} | "
                     f"{_pm(m['pretext']) if m['pretext'] else '–'} |")
    lines += ["", "| tasks | probe difference | spread | ranked by this measurement? |",
              "|---|---|---|---|"]
    for r in res["ranking"]:
        a, b = r["pair"]
        lines.append(f"| {a} vs {b} | {100 * r['difference']:.1f} | {100 * r['spread']:.1f} | "
                     + (f"yes: {a} ahead" if r["ranked"] else "no: within the spread") + " |")
    return lines


def _vary_markdown(res: dict) -> list[str]:
    from ..vary import differs

    r = res["random"]
    lines = [f"| {res['task']} | pretext (chance) | probe, mean ± std over training seeds "
             f"{', '.join(map(str, res['train_seeds']))} (random init: {_pm(r)}) | "
             "vs the profile's setting |", "|---|---|---|---|"]
    for name, rows in res["runs"].items():
        base = next(row for row in rows if row["default"])
        for row in rows:
            gap = 100 * (row["probe"]["mean"] - base["probe"]["mean"])
            verdict = ("the profile's setting" if row["default"] else
                       f"{gap:+.1f}, " + ("beyond the spread" if differs(row, base)
                                          else "within the spread"))
            lines.append(f"| {name} = {row['value']} | {_pm(row['pretext'])} "
                         f"({100 * row['chance']:.1f}) | {_pm(row['probe'])} | {verdict} |")
    return lines


def markdown(record) -> str:
    """The README tables of a record (accuracies in %, mean ± std over the labelled subsets
    or the training seeds) and the line that says where they come from."""
    rec = record if isinstance(record, dict) else load(record)
    body = {"compare": _compare_markdown, "seeds": _seeds_markdown,
            "sweep": _sweep_markdown, "vary": _vary_markdown}[rec["kind"]](rec["results"])
    return "\n".join([*body, "", _provenance_line(rec)])


_BLOCK = re.compile(r"<!-- results: (?P<name>[\w.-]+) -->\n"
                    r"(?P<body>(?:(?!<!-- results:).)*?)\n?<!-- /results -->", re.S)
"""A results block: its body never runs into the next block's marker (an empty block is
``<!-- results: NAME -->`` and ``<!-- /results -->`` on consecutive lines)."""


def readme_blocks(text: str) -> dict[str, str]:
    """{record name: the text between its markers} of a README."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def update_readme(text: str, folder: Path | None = None) -> str:
    """``text`` with every results block regenerated from its record (in ``folder``, default
    the committed ones); a block whose record does not exist is a ValueError."""
    def fill(m):
        path = Path(folder or RESULTS_DIR) / f"{m['name']}.json"
        return f"<!-- results: {m['name']} -->\n{markdown(load(path))}\n<!-- /results -->"

    return _BLOCK.sub(fill, text)
