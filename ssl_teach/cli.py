"""Headless runs: ``python -m ssl_teach run TASK --profile quick --out results.json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cache import atomic_write_text
from .data import DATASETS
from .pretext import TASKS
from .profiles import PROFILES


def _workers(text: str):
    """--workers: 'auto' or a number of processes (0: make batches in the training process)."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 0, got {text!r}")
    return n


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=_workers, default=None, metavar="N",
                        help="DataLoader worker processes that make the batches, or 'auto' "
                             "(default: the profile's: 0 for quick, auto for full: none on a "
                             "GPU that holds the images, else 6); changes speed, not results")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ssl_teach",
        description="Train a pretext task and its baselines, then probe their frozen features.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="train one pretext task plus random-init and supervised baselines, "
                    "print the probe table and write the results as JSON",
        description="Train one pretext task (or take it from the checkpoint cache), train the "
                    "random-init and supervised baselines of the same backbone with the same "
                    "budget, run the linear and k-NN probes on every block, print the table "
                    "and optionally write everything as JSON.")
    run.add_argument("task", help=f"the pretext task: {', '.join(TASKS)}")
    run.add_argument("--profile", default="quick", choices=list(PROFILES),
                     help="quick: CPU minutes on the embedded scenes (default); "
                          "full: paper-like budgets for a GPU")
    run.add_argument("--dataset", default="scenes",
                     help=f"dataset name (default: scenes); one of: {', '.join(DATASETS)}")
    run.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                     help="folder of the real datasets, in torchvision's layout "
                          "(cifar-10-batches-py/, stl10_binary/, FashionMNIST/raw/, ...); "
                          "for --dataset folder, the image folder itself. Default: "
                          "$SSL_TEACH_DATA if set, else ~/.cache/ssl_teach/datasets")
    run.add_argument("--download", action="store_true",
                     help="allow downloading a missing dataset with torchvision (the only "
                          "way this program uses the network; off by default)")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of the model initialisation, the batch order and the pretext "
                          "parameters (default: 0); the same seed gives the same numbers")
    run.add_argument("--device", default="auto",
                     help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    run.add_argument("--out", type=Path, default=None,
                     help="write the results as JSON to this file (written atomically)")
    _add_workers(run)
    run.add_argument("--no-cache", action="store_true",
                     help="train from scratch and do not write checkpoints "
                          "(the cache lives in $SSL_TEACH_CACHE or ~/.cache/ssl_teach)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    cmp = sub.add_parser(
        "compare", help="all pretext tasks side by side: probes per block, label efficiency, "
                        "compute cost",
        description="Train every pretext task and both baselines (or take them from the "
                    "checkpoint cache) on the same backbone and budget, probe every block, and "
                    "measure label efficiency: the best-block linear probe with 1, 4, 16, 64 "
                    "and all labels per class, over several seeds of the labelled subset, next "
                    "to the same backbone trained from scratch on only those labels.")
    cmp.add_argument("--tasks", default=",".join(TASKS),
                     help=f"comma-separated pretext tasks (default: {','.join(TASKS)})")
    cmp.add_argument("--seeds", default="0,1,2",
                     help="comma-separated seeds of the labelled subsets (default: 0,1,2); "
                          "they change which images are labelled, nothing else")
    cmp.add_argument("--profile", default="quick", choices=list(PROFILES),
                     help="quick (default) or full")
    cmp.add_argument("--dataset", default="scenes",
                     help=f"dataset name (default: scenes); one of: {', '.join(DATASETS)}")
    cmp.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                     help="folder of the real datasets (see `run --help`)")
    cmp.add_argument("--download", action="store_true",
                     help="allow downloading a missing dataset (off by default)")
    cmp.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    cmp.add_argument("--out", type=Path, default=None,
                     help="write the comparison as JSON to this file (written atomically)")
    _add_workers(cmp)
    cmp.add_argument("--quiet", action="store_true", help="no progress bars")
    bench = sub.add_parser(
        "bench", help="training speed of every task: samples per second and the share of "
                      "time spent making batches",
        description="Train every pretext task and the supervised baseline for a while on the "
                    "embedded scenes (no checkpoint cache) and print what the training loop "
                    "measured: samples and images per second, and the share of the loop spent "
                    "making batches.")
    bench.add_argument("--tasks", default=",".join([*TASKS, "supervised"]),
                       help="comma-separated tasks (default: every pretext task and supervised)")
    bench.add_argument("--profile", default="quick", choices=list(PROFILES),
                       help="quick (default) or full")
    bench.add_argument("--steps", type=int, default=None,
                       help="training steps per task (default: the profile's whole budget)")
    bench.add_argument("--images", type=int, default=None,
                       help="scenes to render (default: the profile's counts, at most 20,000)")
    _add_workers(bench)
    bench.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    bench.add_argument("--out", type=Path, default=None,
                       help="write the results as JSON to this file (written atomically)")
    student = sub.add_parser(
        "student", help="write student copies of the notebooks (solutions replaced by stubs)",
        description="Write a student copy of every notebook: each cell tagged 'solution' is "
                    "replaced by a stub (the same signatures, a '# YOUR CODE HERE' banner and "
                    "'raise NotImplementedError'); everything else is kept.")
    student.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                         help="folder of the instructors' notebooks (default: notebooks)")
    student.add_argument("--out", type=Path, default=Path("build/student"),
                         help="folder for the student copies (default: build/student)")
    return p


def format_results(results: dict) -> str:
    """The probe tables and the pretext accuracy of a results dict, as plain text."""
    lines = [f"task {results['task']} on {results['dataset']} ({results['profile']} profile, "
             f"seed {results['seed']})",
             f"held-out pretext accuracy: {100 * results['pretext']['accuracy']:.1f}% "
             f"(chance {100 * results['pretext']['chance']:.1f}%)", ""]
    for metric in ("linear", "knn"):
        table = results["probe"][metric]
        blocks = list(next(iter(table.values())))
        head = f"{metric + ' probe':<14}" + "".join(f"{b:>9}" for b in blocks) + f"{'best':>9}"
        lines += [head, "-" * len(head)]
        for method, accs in table.items():
            lines.append(f"{method:<14}" + "".join(f"{100 * accs[b]:>8.1f}%" for b in blocks)
                         + f"{100 * max(accs.values()):>8.1f}%")
        lines.append("")
    sec = results["seconds"]
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items()))
    lines.append(f"making pretext batches took {100 * results['batch_share']:.1f}% "
                 "of training time")
    return "\n".join(lines)


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def _emit(text: str, results: dict, out: Path | None) -> None:
    """Print the tables, and write the results as JSON (atomically) when asked."""
    print(text)
    if out:
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
        print(f"results written to {out}")


def _compare(args) -> None:
    from .compare import compare, format_compare

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = compare(tasks, profile=args.profile, dataset=args.dataset,
                      seeds=_int_list(args.seeds, "--seeds"), device=args.device,
                      progress=not args.quiet, data_dir=args.data_dir, download=args.download,
                      workers=args.workers)
    _emit(format_compare(results), results, args.out)


def _bench(args) -> None:
    from .bench import bench, format_bench

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in (*TASKS, "supervised"):
            raise ValueError(f"unknown task {t!r}; choose from: {', '.join(TASKS)}, supervised")
    results = bench(tasks, profile=args.profile, images=args.images, steps=args.steps,
                    workers=args.workers, device=args.device)
    _emit(format_bench(results), results, args.out)


def _student(args) -> None:
    from .classroom import write_student_copies

    written = write_student_copies(args.notebooks, args.out)
    print(f"{len(written)} student notebooks written to {args.out}")


def _run(args) -> None:
    from .experiment import run  # imported late so that --help answers at once

    if args.task not in TASKS:
        raise ValueError(f"unknown pretext task {args.task!r}; choose one of: {', '.join(TASKS)}")
    results = run(args.task, profile=args.profile, dataset=args.dataset, seed=args.seed,
                  device=args.device, progress=not args.quiet, cache=not args.no_cache,
                  data_dir=args.data_dir, download=args.download, workers=args.workers)
    _emit(format_results(results), results, args.out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "compare": _compare, "bench": _bench,
               "student": _student}[args.command]
    try:
        command(args)
    except ValueError as err:  # bad input: one clear line, exit status 2
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
