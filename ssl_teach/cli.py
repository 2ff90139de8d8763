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


def _add_precision(parser: argparse.ArgumentParser, *, bench: bool = False) -> None:
    parser.add_argument(
        "--precision", choices=["auto", "float32", "bfloat16"], default=None,
        help=("the precision compared with float32 (default: auto)" if bench else
              "arithmetic of training and inference (default: the profile's, auto)")
        + ": auto is bfloat16 on a CPU that computes it natively (AVX-512 BF16 or AMX), "
          "mixed precision on CUDA, float32 elsewhere; bfloat16 forces it (slow where the "
          "CPU emulates it)")


def _profile(args):
    """The profile the command runs: the named one, with --precision when given."""
    if args.precision is None:
        return args.profile
    import dataclasses

    from .profiles import get_profile

    return dataclasses.replace(get_profile(args.profile), precision=args.precision)


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
    _add_precision(run)
    run.add_argument("--no-cache", action="store_true",
                     help="train from scratch and do not write checkpoints "
                          "(the cache lives in $SSL_TEACH_CACHE or ~/.cache/ssl_teach)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--stl10-folds", action="store_true",
                     help="with --dataset stl10: also STL-10's own protocol, the linear probe "
                          "fitted on each of its 10 predefined training folds of 1,000 images "
                          "(stl10_binary/fold_indices.txt), mean ± std on the test split: "
                          "how the papers' STL-10 numbers were measured")
    cmp = sub.add_parser(
        "compare", help="all pretext tasks side by side: probes per block, label efficiency, "
                        "compute cost",
        description="Train every pretext task and both baselines (or take them from the "
                    "checkpoint cache) on the same backbone and budget, probe every block, and "
                    "ask whether pretraining pays off: the linear probe and fine-tuning (all "
                    "layers, one recipe for every initialisation; from the random one it is "
                    "training from scratch) with 4, 16, 64, 256 and all labels per class, over "
                    "several seeds of the labelled subset. Every choice (block, L2, the "
                    "fine-tuning step kept) is made on validation images carved from the "
                    "labelled ones; the test split only reports.")
    cmp.add_argument("--tasks", default=",".join(TASKS),
                     help=f"comma-separated pretext tasks (default: {','.join(TASKS)})")
    cmp.add_argument("--seeds", default="0,1,2",
                     help="comma-separated seeds of the labelled subsets (default: 0,1,2); "
                          "they change which images are labelled, nothing else")
    cmp.add_argument("--sizes", default="4,16,64,256,all",
                     help="labelled images per class, comma-separated, increasing, 'all' last "
                          "(default: 4,16,64,256,all)")
    cmp.add_argument("--train-seeds", default=None, metavar="SEEDS",
                     help="instead of the label-efficiency study: train every task and both "
                          "baselines with each of these (at least three) training seeds, e.g. "
                          "0,1,2, and report the spread of the pretext accuracy and of the "
                          "best-block probe over them, and which tasks it can rank")
    _add_recorded_run_options(
        cmp, record_help="also write the results with their provenance (date, machine, "
                         "command, configuration fingerprint) into the package's results "
                         "folder, ssl_teach/results/, for committing (with --train-seeds: "
                         "seeds-PROFILE-DATASET.json)")
    _add_precision(cmp)
    sweep = sub.add_parser(
        "sweep", help="longer pretraining: every task at 1x, 2x, 4x and 8x its budget, probed "
                      "and fine-tuned with 16 labels per class",
        description="Train every pretext task at several multiples of its budget in the "
                    "profile (or take it from the checkpoint cache), and record per budget the "
                    "pretext accuracy, the linear probe (best block chosen on validation) and "
                    "fine-tuning with 16 labels per class over several labelled subsets, next "
                    "to fine-tuning from scratch.")
    sweep.add_argument("--tasks", default=",".join(TASKS),
                       help=f"comma-separated pretext tasks (default: {','.join(TASKS)})")
    sweep.add_argument("--multipliers", default="1,2,4,8",
                       help="comma-separated budget multiples (default: 1,2,4,8)")
    sweep.add_argument("--seeds", default="0,1,2",
                       help="comma-separated seeds of the labelled subsets (default: 0,1,2)")
    sweep.add_argument("--labels", type=int, default=16,
                       help="labelled images per class for fine-tuning (default: 16)")
    _add_recorded_run_options(sweep)
    var = sub.add_parser(
        "vary", help="what one setting of a task does: trained once per value and training "
                     "seed, probed, next to random init",
        description="Train one pretext task once per value of an option (the others as the "
                    "profile sets them; the profile's own value is always included) and per "
                    "training seed, or take it from the checkpoint cache, and record per value "
                    "the pretext accuracy and the linear probe (best block chosen on "
                    "validation), mean ± std over the seeds, next to the random-init probe. "
                    "Example: vary simclr --option temperature=0.1,0.5,1.0 --option "
                    "group=8,16,32.")
    var.add_argument("task", choices=list(TASKS), help="the pretext task")
    var.add_argument("--option", action="append", required=True, metavar="NAME=V1,V2",
                     help="an option of the task and the values to train (repeatable)")
    var.add_argument("--train-seeds", default="0,1,2",
                     help="comma-separated training seeds (default: 0,1,2)")
    _add_recorded_run_options(var)
    res = sub.add_parser(
        "results", help="the committed result files: check them against the code, print "
                        "their README tables",
        description="Read the result files committed in ssl_teach/results/ (written by "
                    "`compare --record` and `sweep --record`). Without options: list them and "
                    "check that each still matches the current code's configuration.")
    res.add_argument("--markdown", nargs="?", const="", default=None, metavar="NAME",
                     help="print the README tables of one record (or of all)")
    res.add_argument("--readme", type=Path, default=None, metavar="README",
                     help="regenerate the results blocks of this README file in place")
    bench = sub.add_parser(
        "bench", help="training and inference speed of every task, in float32 and in the "
                      "precision auto chooses, against the machine's matrix-product limit",
        description="Train every pretext task and the supervised baseline for a while on the "
                    "embedded scenes (no checkpoint cache), in float32 and in the precision "
                    "--precision chooses here, and print what the training loop measured: "
                    "samples per second in both, the speed-up, held-out inference samples per "
                    "second, the share of the loop spent making batches, and the achieved "
                    "GFLOP/s of the supervised step next to the GFLOP/s of large matrix "
                    "products measured in float32 and bfloat16 on the same device.")
    bench.add_argument("--tasks", default=",".join([*TASKS, "supervised"]),
                       help="comma-separated tasks (default: every pretext task and supervised)")
    bench.add_argument("--profile", default="quick", choices=list(PROFILES),
                       help="quick (default) or full")
    bench.add_argument("--steps", type=int, default=None,
                       help="training steps per task (default: the profile's whole budget)")
    bench.add_argument("--images", type=int, default=None,
                       help="scenes to render (default: the profile's counts, at most 20,000)")
    _add_workers(bench)
    _add_precision(bench, bench=True)
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
                         help="folder for the student copies (default: build/student); never "
                              "the notebooks folder or inside it")
    student.add_argument("--force", action="store_true",
                         help="replace student copies already in --out and remove the ones "
                              "written before for notebooks that no longer exist (files with "
                              "solutions and files not written here are never touched)")
    book = sub.add_parser(
        "book", help="build the course as a static HTML book: every notebook executed",
        description="Execute every notebook in order (through the checkpoint cache, "
                    "$SSL_TEACH_CACHE) and render the course into a static HTML site with "
                    "Sphinx and MyST-NB: an index page, every chapter with its figures and "
                    "numbers, navigation and search. The site is moved into --out only when "
                    "the build succeeded.")
    book.add_argument("--out", type=Path, default=Path("build/book"),
                      help="folder of the site (default: build/book); its Sphinx source is "
                           "written next to it (build/book-src)")
    book.add_argument("--notebooks", type=Path, default=None,
                      help="folder of the notebooks (default: the course's notebooks)")
    book.add_argument("--timeout", type=int, default=900,
                      help="seconds one cell may run (default: 900, as make test)")
    book.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return p


def format_results(results: dict) -> str:
    """The probe tables, the pretext accuracy and the fine-tuning of a results dict, as plain
    text."""
    from .finetune import format_downstream

    lines = [f"task {results['task']} on {results['dataset']} ({results['profile']} profile, "
             f"seed {results['seed']})",
             f"held-out pretext accuracy: {100 * results['pretext']['accuracy']:.1f}% "
             f"(chance {100 * results['pretext']['chance']:.1f}%)", ""]
    best = results["probe"]["best_block"]
    for metric in ("linear", "knn"):
        table = results["probe"][metric]
        blocks = list(next(iter(table.values())))
        head = (f"{metric + ' probe':<14}" + "".join(f"{b:>9}" for b in blocks)
                + f"{'best':>9}  (block chosen on validation)")
        lines += [head, "-" * len(head)]
        for method, accs in table.items():
            lines.append(f"{method:<14}" + "".join(f"{100 * accs[b]:>8.1f}%" for b in blocks)
                         + f"{100 * accs[best[method]]:>8.1f}%  {best[method]}")
        lines.append("")
    down = format_downstream(results.get("downstream") or {})
    lines += [down, ""] if down else []
    sec = results["seconds"]
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items()))
    lines.append(f"making pretext batches took {100 * results['batch_share']:.1f}% "
                 "of training time")
    return "\n".join(lines)


def _add_recorded_run_options(parser, *, record_help: str = "also write them with their "
                              "provenance into ssl_teach/results/") -> None:
    """The options of the long runs whose output can be recorded (compare, sweep, vary):
    profile, data, device, where the JSON goes, --record, loader workers and --quiet."""
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="quick (default) or full")
    parser.add_argument("--dataset", default="scenes",
                        help=f"dataset name (default: scenes); one of: {', '.join(DATASETS)}")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="folder of the real datasets (see `run --help`)")
    parser.add_argument("--download", action="store_true",
                        help="allow downloading a missing dataset (off by default)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the results as JSON to this file (written atomically)")
    parser.add_argument("--record", action="store_true", help=record_help)
    _add_workers(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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


def _preflight(args, seeds=()) -> None:
    """The settings' pre-flight check (device, seeds, --out) before any data is loaded."""
    from .preflight import preflight

    preflight(device=args.device, seeds=seeds, out=args.out)


def _compare(args) -> None:
    from .compare import compare, format_compare

    _preflight(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.train_seeds is not None:
        from .compare import format_seed_spread, seed_spread

        results = seed_spread(tasks, profile=_profile(args), dataset=args.dataset,
                              train_seeds=_int_list(args.train_seeds, "--train-seeds"),
                              device=args.device, progress=not args.quiet,
                              data_dir=args.data_dir, download=args.download,
                              workers=args.workers)
        _emit(format_seed_spread(results), results, args.out)
        _record("seeds", results, args)
        return
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results = compare(tasks, profile=_profile(args), dataset=args.dataset,
                      seeds=_int_list(args.seeds, "--seeds"), device=args.device,
                      progress=not args.quiet, data_dir=args.data_dir, download=args.download,
                      workers=args.workers, sizes=sizes)
    _emit(format_compare(results), results, args.out)
    _record("compare", results, args)


def _command_line() -> str:
    return " ".join(["python -m ssl_teach", *sys.argv[1:]])


def _record(kind: str, results: dict, args) -> None:
    """With --record: write the results and their provenance into ssl_teach/results/."""
    if args.record:
        from .results import write_record

        # with --precision the run used another profile than the named one: record that one
        forced = getattr(args, "precision", None) is not None
        path = write_record(kind, results, command=_command_line(),
                            profile=_profile(args) if forced else None)
        print(f"record written to {path}")


def _sweep(args) -> None:
    from .sweep import format_sweep, sweep

    _preflight(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = sweep(tasks, profile=args.profile, dataset=args.dataset,
                    multipliers=_int_list(args.multipliers, "--multipliers"),
                    seeds=_int_list(args.seeds, "--seeds"), size=args.labels,
                    device=args.device, progress=not args.quiet, data_dir=args.data_dir,
                    download=args.download, workers=args.workers)
    _emit(format_sweep(results), results, args.out)
    _record("sweep", results, args)


def _vary(args) -> None:
    from .vary import format_vary, parse_options, vary

    seeds = _int_list(args.train_seeds, "--train-seeds")
    _preflight(args, seeds)
    results = vary(args.task, parse_options(args.option), profile=args.profile,
                   dataset=args.dataset, train_seeds=seeds, device=args.device,
                   progress=not args.quiet, data_dir=args.data_dir, download=args.download,
                   workers=args.workers)
    _emit(format_vary(results), results, args.out)
    _record("vary", results, args)


def _results(args) -> None:
    from . import results as records

    if args.readme is not None:
        if not args.readme.exists():
            raise ValueError(f"no README at {args.readme}")
        text = args.readme.read_text()
        new = records.update_readme(text)
        if new != text:
            atomic_write_text(args.readme, new)
        print(f"{len(records.readme_blocks(new))} results blocks in {args.readme} "
              f"{'regenerated' if new != text else 'already up to date'}")
        return
    paths = records.committed()
    if args.markdown is not None:
        chosen = [records.load(args.markdown)] if args.markdown else [
            records.load(p) for p in paths]
        for rec in chosen:
            print(f"<!-- results: {rec['name']} -->\n{records.markdown(rec)}\n"
                  "<!-- /results -->\n")
        return
    if not paths:
        print(f"no result files in {records.RESULTS_DIR}")
    stale = []
    for path in paths:
        try:
            rec = records.check(path)
            print(f"{path.name}: matches the code ({rec['provenance']['date']}, "
                  f"{rec['provenance']['command']})")
        except records.StaleRecord as err:
            stale.append(str(err))
    if stale:
        raise ValueError("stale result files: " + " | ".join(stale))


def _bench(args) -> None:
    from .bench import bench, format_bench

    _preflight(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in (*TASKS, "supervised"):
            raise ValueError(f"unknown task {t!r}; choose from: {', '.join(TASKS)}, supervised")
    results = bench(tasks, profile=args.profile, images=args.images, steps=args.steps,
                    workers=args.workers, device=args.device,
                    precision=args.precision or "auto")
    _emit(format_bench(results), results, args.out)


def _student(args) -> None:
    from .classroom import stale_copies, write_student_copies

    stale = stale_copies(args.notebooks, args.out) if args.force else []
    written = write_student_copies(args.notebooks, args.out, force=args.force)
    print(f"{len(written)} student notebooks written to {args.out}")
    if stale:
        print(f"removed {len(stale)} student copies of notebooks that no longer exist: "
              f"{', '.join(p.name for p in stale)}")


def _run(args) -> None:
    from .experiment import run  # imported late so that --help answers at once

    if args.task not in TASKS:
        raise ValueError(f"unknown pretext task {args.task!r}; choose one of: {', '.join(TASKS)}")
    _preflight(args, seeds=[args.seed])
    results = run(args.task, profile=_profile(args), dataset=args.dataset, seed=args.seed,
                  device=args.device, progress=not args.quiet, cache=not args.no_cache,
                  data_dir=args.data_dir, download=args.download, workers=args.workers,
                  stl10_folds=args.stl10_folds)
    text = format_results(results)
    if "stl10_folds" in results:
        from .experiment import format_stl10_folds

        text += "\n\n" + format_stl10_folds(results["stl10_folds"])
    _emit(text, results, args.out)


def _book(args) -> None:
    from .book import NOTEBOOKS, build, describe

    index = build(args.out, notebooks=args.notebooks or NOTEBOOKS, timeout=args.timeout,
                  quiet=args.quiet)
    print(describe(index))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "compare": _compare, "bench": _bench, "student": _student,
               "sweep": _sweep, "vary": _vary, "results": _results,
               "book": _book}[args.command]
    try:
        command(args)
    except ValueError as err:  # bad input or data: one clear line, exit status 2
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
