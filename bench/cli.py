"""diffbench command line: parse -> config -> one library call.

Exit codes: 0 success, 1 a cell failed, 2 bad usage, bad config or bad input.
"""
import argparse
import logging
import math
import sys
from pathlib import Path

from methods.errors import DiffbenchError

EPILOG = """examples:
  diffbench run quick                 run the default suite, then render its report
  diffbench run my-suite.toml         run a suite from a TOML file
  diffbench ls methods                list registered methods and where each comes from
  diffbench run my-suite.toml --plugin my_sampler.py   with methods from a plugin file
  diffbench report quick              re-render reports/quick/ from stored rows
  diffbench report quick --against results/published/quick   changes against a baseline
  diffbench train eps --dataset mnist5k   train (or resume) a model recipe into the cache
  diffbench compare results-main/quick results/quick   gate speed, FID and outputs (exit 1 on a regression)
  diffbench audit quick --results-dir results/published   re-run 3 stored cells, check they reproduce
  diffbench score my-samples/ --ref mnist5k --append quick   score samples made elsewhere
"""


def version_text() -> str:
    """diffbench's version, and the versions of what its numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    import bench

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return (f"diffbench {bench.__version__} (torch {installed('torch')}, torch-fidelity "
            f"{installed('torch-fidelity')}, python {sys.version.split()[0]})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffbench", description="Benchmark diffusion sampling methods.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a suite and render its report",
                              epilog="example: diffbench run quick --results-dir results",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("suite", help="a suite name from suites/ or a path to a .toml file")
    _add_dirs(run)
    run.add_argument("--no-report", action="store_true", help="skip rendering the report")
    run.add_argument("--shard", metavar="I/N", type=parse_shard,
                     help="run only shard I of N (0-based: every N-th cell from the I-th) into "
                          "results/<suite>/rows.shard-I-of-N.jsonl; combine with `diffbench merge`")
    run.add_argument("--split-samples", type=int, default=0, metavar="K",
                     help="split every cell's seed range into K parts, each sampled on its own and "
                          "stored (features at full precision), then scored once on their union")
    run.add_argument("--part", type=int, metavar="J",
                     help="with --split-samples: run only part J (0-based) of every cell; combine "
                          "the parts with `diffbench merge`")
    run.add_argument("--executor", choices=["submitit", "local"],
                     help="run the cells as one job array through submitit: on Slurm (submitit) or "
                          "in local processes (local); waits, then merges the shards")
    run.add_argument("--max-parallel", type=int, default=0, metavar="N",
                     help="with --executor: at most N array tasks (shards of the cells; default one per cell)")
    run.add_argument("--slurm-partition", default="", help="with --executor submitit: the partition")
    run.add_argument("--slurm-gpus-per-task", type=int, default=0, help="with --executor submitit")
    run.add_argument("--slurm-cpus-per-task", type=int, default=0, help="with --executor submitit")
    run.add_argument("--slurm-time", type=int, default=240, metavar="MINUTES",
                     help="with --executor: a task's time limit (a task out of time is requeued "
                          "and resumes; default 240)")
    _add_plugin(run)
    run.add_argument("--inception-weights", metavar="PATH",
                     help="torch-fidelity Inception weights file (.pth or .safetensors) for "
                          "feature_extractor = \"inception\"; overrides the suite's")

    merge = commands.add_parser("merge", help="append a suite's shard files to its rows.jsonl",
                                epilog="example: diffbench merge mnist && diffbench report mnist")
    merge.add_argument("suite", help="suite name (its shard files are read from the results dir; "
                                     "split cells' parts also need the suite: a name or .toml path)")
    merge.add_argument("--results-dir", type=Path, default=Path("results"),
                       help="where results/<suite>/ lives (default: ./results)")
    _add_plugin(merge)

    ls = commands.add_parser("ls", help="list registered things",
                             epilog="example: diffbench ls methods")
    ls.add_argument("what", choices=["methods", "datasets", "metrics", "suites", "recipes"])
    _add_plugin(ls)

    report = commands.add_parser("report", help="render reports/<suite>/ from stored rows",
                                 epilog="example: diffbench report quick")
    report.add_argument("suite", help="suite name (its rows are read from the results dir)")
    report.add_argument("--against", metavar="BASELINE",
                        help="compare with another result set: a results directory, a rows.jsonl "
                             "file or a suite name under --results-dir")
    _add_dirs(report)

    compare = commands.add_parser(
        "compare", help="gate a run against a baseline: speed, quality and outputs per cell "
                        "(exit 1 on a regression)",
        epilog="examples:\n  diffbench compare results-main/mnist results/mnist --summary gate.md\n"
               "  pytest tests/benchmarks --benchmark-enable --benchmark-json=now.json "
               "--benchmark-save-data && diffbench compare baseline.json now.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("baseline", help="a results folder (results/<suite>), a rows.jsonl, or a "
                                          "pytest-benchmark JSON (with --benchmark-save-data)")
    compare.add_argument("current", help="the same kind of file, measured now")
    compare.add_argument("--min-effect", type=float, default=0.05,
                         help="smallest slowdown called a regression, as a fraction (default 0.05)")
    compare.add_argument("--alpha", type=float, default=0.01,
                         help="significance level of the Mann-Whitney U test (default 0.01)")
    compare.add_argument("--fid-window", metavar="LO,HI", type=parse_window,
                         help="accept FID only inside [LO, HI] (overrides the suite's [gate] fid)")
    compare.add_argument("--output-tolerance", metavar="LEVELS", type=int, default=0,
                         help="largest difference of an audit sample's pixel, in uint8 levels, "
                              "still accepted (default 0: bit-identical; raise it for another device)")
    compare.add_argument("--allow-different-machines", action="store_true",
                         help="compare results from different machines")
    compare.add_argument("--summary", metavar="FILE", type=Path,
                         help="also write a Markdown summary (for a CI job page)")

    audit = commands.add_parser(
        "audit", help="re-run a seeded random subset of a suite's stored cells and check that each "
                      "reproduces its row (exit 1 on a mismatch)",
        epilog="example: diffbench audit quick --results-dir results/published --cells 3")
    audit.add_argument("suite", help="a suite name from suites/ or a path to a .toml file")
    audit.add_argument("--results-dir", type=Path, default=Path("results"),
                       help="where results/<suite>/ lives (default: ./results)")
    audit.add_argument("--cells", type=int, default=3, help="how many stored cells to re-run (default 3)")
    audit.add_argument("--seed", type=int, default=0, help="which cells are drawn (default 0)")
    audit.add_argument("--fid-tolerance", type=float, default=0.01,
                       help="relative FID difference accepted on another machine kind (default 0.01); "
                            "the same kind must give the same FID")
    audit.add_argument("--time-band", type=float, default=0.5,
                       help="time per image accepted within stored x (1 + B) and stored / (1 + B), "
                            "on the same machine kind (default 0.5)")
    audit.add_argument("--output-tolerance", metavar="LEVELS", type=int, default=1,
                       help="uint8 levels an audit sample's pixel may differ by on another machine "
                            "kind (default 1: a rounding boundary; the same kind must be identical)")
    _add_plugin(audit)

    score = commands.add_parser(
        "score", help="score samples made elsewhere (a folder of PNG/JPEG or an .npz)",
        epilog="example: diffbench score my-samples/ --ref mnist5k --metrics fid,kid")
    score.add_argument("samples", help="a folder of PNG/JPEG images or an .npz of pixels")
    score.add_argument("--ref", required=True,
                       help="a dataset (name, folder or .npz) or FID statistics (.npz with mu, sigma)")
    score.add_argument("--ref-split", default="train", choices=["train", "test"],
                       help="the reference dataset's split (default train)")
    score.add_argument("--metrics", default="fid", help="comma-separated: fid, fid_infinity, fd, kid, "
                       "cmmd, precision, recall, density, coverage, isc (default fid)")
    score.add_argument("--feature-extractor", default="lenet", help="lenet, inception, a plugin's "
                       "extractor, dinov2:PATH or clip:PATH (default lenet)")
    score.add_argument("--inception-weights", default=None, help="a weights file for inception")
    score.add_argument("--append", metavar="SUITE",
                       help="also store the scores as a row of results/<SUITE>/ (ranked with the "
                            "rows that share its protocol; NFE and time n/a)")
    score.add_argument("--label", help="the row's name in reports (default: the samples' name)")
    score.add_argument("--results-dir", type=Path, default=Path("results"),
                       help="where results/<SUITE>/ lives (default: ./results)")
    train = commands.add_parser("train", help="train (or resume) a model recipe into the cache",
                                epilog="example: diffbench train eps --dataset mnist5k")
    train.add_argument("recipe", help="a model recipe name (see `diffbench ls recipes`)")
    train.add_argument("--dataset", help="dataset for a template recipe (default: mnist5k)")
    train.add_argument("--scale", type=int, default=4,
                       help="super-resolution factor for a superres recipe (default: 4)")
    _add_plugin(train)
    return parser


def _add_plugin(parser):
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load a plugin (a module name or a .py file) that registers methods, "
                             "objectives, recipes, datasets or metrics; repeatable")


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 0/4)") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= I < N (shards are numbered from 0)")
    return index, count


def parse_window(text: str) -> tuple[float, float]:
    """"LO,HI" with finite 0 <= LO < HI."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO,HI (e.g. 23.01,23.95)") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise argparse.ArgumentTypeError(f"{text!r}: need finite 0 <= LO < HI")
    return low, high


def _add_dirs(parser):
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where results/<suite>/ lives (default: ./results)")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                        help="where reports/<suite>/ is written (default: ./reports)")


def cmd_run_array(args) -> int:
    """`run --executor`: the suite as one job array (bench.run.executor), then its report."""
    from bench.config import load_suite
    from bench.store import ResultStore
    from bench.report import render_report
    from bench.run.executor import ClusterOptions, run_on_cluster
    from bench.run.parts import check_split
    from bench.run.runner import cell_batches
    if args.shard:
        raise DiffbenchError("--shard and --executor do not combine: the executor makes the shards")
    for flag, value in (("--max-parallel", args.max_parallel), ("--slurm-gpus-per-task", args.slurm_gpus_per_task),
                        ("--slurm-cpus-per-task", args.slurm_cpus_per_task)):
        if value < 0:
            raise DiffbenchError(f"{flag} must be 0 or more, got {value}")
    if args.slurm_time < 1:
        raise DiffbenchError(f"--slurm-time must be at least 1 minute, got {args.slurm_time}")
    config = load_suite(args.suite, inception_weights=args.inception_weights, plugins=args.plugin)
    plugins = tuple(str(Path(p).resolve()) if Path(p).is_file() else p for p in args.plugin)
    options = ClusterOptions(args.executor, args.max_parallel, args.slurm_partition,
                             args.slurm_gpus_per_task, args.slurm_cpus_per_task, args.slurm_time)
    if args.split_samples:
        if args.part is not None:
            raise DiffbenchError("--part and --executor do not combine: the executor runs every part")
        check_split(args.split_samples, None, cell_batches(config), config.warmup_batches)
    merged = run_on_cluster(str(Path(config.path).resolve()), plugins, args.results_dir.resolve(),
                            len(config.cells), config.name, options,
                            args.inception_weights and str(Path(args.inception_weights).resolve()),
                            args.split_samples)
    print(f"merged: {merged} row(s) appended to {args.results_dir / config.name / 'rows.jsonl'}")
    if not args.no_report:
        out = render_report(config.name, args.results_dir, args.reports_dir)
        print(f"report: {out / 'index.html'} (also leaderboard.md, tables.tex, figures)")
    rows = ResultStore(args.results_dir, config.name).read()[0]
    failed = sum(r["status"] != "ok" for r in {r["cell_key"]: r for r in rows}.values())
    return 1 if failed else 0


def cmd_run_split(args) -> int:
    """`run --split-samples K [--part J]`: the cells' parts (all K here, one after the other,
    or part J alone), then, with all K, their rows and the report."""
    from bench.config import load_suite
    from bench.report import render_report
    from bench.run.parts import check_split
    from bench.run.runner import cell_batches, merge_split_cells, run_suite
    config = load_suite(args.suite, inception_weights=args.inception_weights, plugins=args.plugin)
    check_split(args.split_samples, args.part, cell_batches(config), config.warmup_batches)
    parts = [args.part] if args.part is not None else range(args.split_samples)
    for index in parts:
        outcome = run_suite(config, args.results_dir, shard=args.shard, part=(index, args.split_samples))
        print(f"part {index} of {args.split_samples}: {outcome.rows_written} cell part(s) stored, "
              f"{outcome.cells_skipped} already there")
    if args.part is not None:
        print(f"when every part is stored: diffbench merge {config.name}")
        return 0
    merged = merge_split_cells(config, args.results_dir)
    print(f"rows: {merged.rows_written} merged from their parts; results in {merged.results_path}")
    if not args.no_report:
        out = render_report(config.name, args.results_dir, args.reports_dir)
        print(f"report: {out / 'index.html'} (also leaderboard.md, tables.tex, figures)")
    return 1 if merged.failed else 0


def cmd_run(args) -> int:
    if args.part is not None and not args.split_samples:
        raise DiffbenchError("--part needs --split-samples K")
    if args.executor:
        return cmd_run_array(args)
    if args.split_samples:
        return cmd_run_split(args)
    from bench.config import load_suite
    from bench.paths import ensure_writable
    from bench.report import render_report
    from bench.run import distributed
    from bench.run.runner import run_suite
    distributed.init_from_environment()
    main_process = distributed.is_main()
    try:
        config = load_suite(args.suite, inception_weights=args.inception_weights,
                            plugins=args.plugin)
        if main_process and not (args.shard or args.no_report):   # found now, not after the run
            ensure_writable(args.reports_dir, "reports folder",
                            "fix its permissions, free disk space or pass --reports-dir")
        outcome = run_suite(config, args.results_dir, shard=args.shard)
    finally:
        distributed.shutdown()
    if not main_process:
        return 0   # rank 0 wrote the rows and reports them
    print(f"rows: {outcome.rows_written} written, {outcome.cells_skipped} already stored; "
          f"results in {outcome.results_path}")
    if args.shard:
        print(f"shard {args.shard[0]}/{args.shard[1]} done; when every shard is: "
              f"diffbench merge {config.name}")
    elif not args.no_report:
        out = render_report(config.name, args.results_dir, args.reports_dir)
        print(f"report: {out / 'index.html'} (also leaderboard.md, tables.tex, figures)")
    if outcome.failed:
        print(f"{outcome.failed} cell(s) failed (status error or nonfinite)", file=sys.stderr)
        return 1
    return 0


def cmd_ls(args) -> int:
    from bench.plugins import load_plugins
    load_plugins(args.plugin)
    if args.what == "methods":
        from methods import METHODS
        for name, m in METHODS.items():
            missing = m.missing_requirements()
            print(f"{name:40s} {m.task:9s} model={m.model or '-':9s} v{m.version:24s} "
                  f"{METHODS.origin(name)!s:12s} {m.paper}"
                  + (f" [not installed: {', '.join(missing)}]" if missing else ""))
    elif args.what == "datasets":
        from bench.data.datasets import DATASETS
        for name, loader in DATASETS.items():
            print(f"{name:24s} {DATASETS.origin(name)!s:12s} "
                  f"{((loader.__doc__ or '').strip().splitlines() or [''])[0]}")
    elif args.what == "metrics":
        from bench.quality.metrics import METRICS
        for name, m in METRICS.items():
            print(f"{name:24s} {METRICS.origin(name)!s:12s} "
                  f"{'higher' if m.higher_is_better else 'lower'} is better; {m.description}")
    elif args.what == "recipes":
        from bench.models.recipes import RECIPES
        for name, r in RECIPES.items():
            print(f"{name:24s} {RECIPES.origin(name)!s:12s} model={r.model} objective={r.objective} "
                  f"dataset={r.dataset or '(suite dataset)'} steps={r.budget.steps}")
    else:
        from bench.config import suite_names
        for name in suite_names():
            print(name)
    return 0


def cmd_report(args) -> int:
    from bench.report import render_report
    out = render_report(args.suite, args.results_dir, args.reports_dir, against=args.against)
    print(f"report: {out / 'index.html'} (also leaderboard.md, tables.tex, figures)")
    return 0


def cmd_score(args) -> int:
    from bench.run.score import append_scored, check_label, score_samples, summary
    from bench.store import ResultStore
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    label = check_label(args.label if args.label is not None else Path(args.samples).stem)
    if args.append is not None:
        ResultStore(args.results_dir, args.append).ensure_writable()
    scored = score_samples(args.samples, args.ref, metrics, args.feature_extractor, args.ref_split,
                           args.inception_weights)
    print(summary(scored))
    if args.append is not None:
        row, peers = append_scored(scored, args.results_dir, args.append, label)
        print(f"appended as {label!r} to {args.results_dir / args.append / 'rows.jsonl'}: "
              + (f"ranked with {peers} stored row(s) of protocol {row['protocol_fingerprint']}"
                 if peers else f"no stored row has protocol {row['protocol_fingerprint']}, so it "
                 "is ranked on its own (a run's rows share it when n_samples, reference and "
                 "extractor agree)"))
    return 0


def cmd_train(args) -> int:
    from bench.models.recipes import RECIPES, ensure_trained, resolve_recipe
    from bench.plugins import load_plugins
    load_plugins(args.plugin)
    recipe = RECIPES.get(args.recipe)
    dataset = args.dataset or recipe.dataset or "mnist5k"
    model = ensure_trained(resolve_recipe(args.recipe, dataset, "--dataset", args.scale))
    print(f"model {model.name}: checkpoint sha256 {model.checkpoint_sha256[:16]}, "
          f"{model.num_parameters} parameters")
    return 0


def cmd_merge(args) -> int:
    from bench.merge import merge_shards
    from bench.run.parts import PARTS_DIR
    from bench.store import ResultStore
    store = ResultStore(args.results_dir, Path(args.suite).stem)
    split = (store.directory / PARTS_DIR).is_dir()
    if store.shard_paths() or not split:
        outcome = merge_shards(args.results_dir, store.directory.name)
        print(f"merged {outcome.shards} shard file(s): {outcome.appended} row(s) appended, "
              f"{outcome.already_merged} already there; results in {outcome.rows_path}")
        if outcome.repeated_cells:
            print(f"{outcome.repeated_cells} cell(s) hold more than one completed row (measured "
                  "more than once); reports show the newest of each")
    if split:   # cells split by seed range: scored once every part is stored (needs the suite)
        from bench.config import load_suite
        from bench.run.runner import merge_split_cells
        merged = merge_split_cells(load_suite(args.suite, plugins=args.plugin), args.results_dir)
        print(f"split cells: {merged.rows_written} row(s) merged from their parts, "
              f"{merged.cells_skipped} cell(s) still missing a part")
    return 0


def cmd_compare(args) -> int:
    from bench.paths import atomic_write
    from bench.report.gate import GateOptions, compare, summary_markdown, verdict_lines
    if not 0 <= args.output_tolerance <= 255:
        raise DiffbenchError(f"--output-tolerance must be 0..255 uint8 levels, got {args.output_tolerance}")
    if not (0 < args.alpha < 1 and 0 <= args.min_effect < 10):
        raise DiffbenchError("--alpha must be in (0, 1) and --min-effect in [0, 10)")
    options = GateOptions(args.min_effect, args.alpha, args.fid_window, args.output_tolerance,
                          args.allow_different_machines)
    verdicts = compare(args.baseline, args.current, options)
    print("\n".join(verdict_lines(verdicts)))
    failed = sum(v.failed for v in verdicts)
    print(f"{failed} of {len(verdicts)} cell(s) failed the gate" if failed
          else f"all {len(verdicts)} cell(s) pass the gate")
    if args.summary:
        atomic_write(args.summary, summary_markdown(verdicts, options).encode())
    return 1 if failed else 0


def cmd_audit(args) -> int:
    from bench.audit import AuditOptions, audit
    from bench.report.gate import verdict_lines
    verdicts = audit(args.suite, args.results_dir,
                     AuditOptions(args.cells, args.seed, args.fid_tolerance, args.time_band,
                                  args.output_tolerance), plugins=args.plugin)
    print("\n".join(verdict_lines(verdicts)))
    kinds = sorted({v.machine for v in verdicts})
    print(f"machine against the stored rows: {'; '.join(kinds)}")
    failed = sum(v.failed for v in verdicts)
    print(f"{failed} of {len(verdicts)} audited cell(s) did not reproduce" if failed
          else f"all {len(verdicts)} audited cell(s) reproduce their stored rows")
    return 1 if failed else 0


COMMANDS = {"run": cmd_run, "ls": cmd_ls, "report": cmd_report, "train": cmd_train, "score": cmd_score,
            "compare": cmd_compare, "merge": cmd_merge, "audit": cmd_audit}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except DiffbenchError as err:
        print(f"diffbench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("diffbench: interrupted; finished rows are stored, run again to resume",
              file=sys.stderr)
        return 130
