"""What each `diffbench` command does, given its parsed arguments (bench.cli parses them): load
what it names, make one library call, print the outcome and return the exit code."""
import sys
from pathlib import Path

from methods.errors import DiffbenchError


def cmd_run_array(args) -> int:
    """`run --executor`: the suite as one job array (bench.run.executor), then its report."""
    from bench.config import load_suite
    from bench.store import ResultStore
    from bench.report import render_report
    from bench.run.executor import ClusterOptions, run_on_cluster
    from bench.run.parts import check_split
    from bench.run.cells import cell_batches
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
    from bench.run.cells import cell_batches
    from bench.run.runner import merge_split_cells, run_suite
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
    if args.dry_run:
        return cmd_dry_run(args)
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
    from bench.listing import as_json, as_text, records
    from bench.plugins import load_plugins
    load_plugins(args.plugin)
    entries = records(args.what, full=args.json)
    print(as_json(entries) if args.json else as_text(args.what, entries))
    return 0


def cmd_dry_run(args) -> int:
    """`run --dry-run`: the suite's cells, their NFE and an estimated time; no work is done."""
    from bench.config import load_suite
    from bench.run.plan import plan_lines, plan_suite
    config = load_suite(args.suite, inception_weights=args.inception_weights, plugins=args.plugin)
    print("\n".join(plan_lines(plan_suite(config), config)))
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
