"""diffbench command line: parse -> config -> one library call.

Exit codes: 0 success, 1 a cell failed, 2 bad usage, bad config or bad input.
"""
import argparse
import logging
import math
import re
import sys
from pathlib import Path

from methods.errors import DiffbenchError
from methods.registry import did_you_mean

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


class Parser(argparse.ArgumentParser):
    """argparse, with the closest valid name as a hint for a mistyped command, choice or flag."""

    def error(self, message: str):
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        super().error(message)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._subparsers._group_actions[0].choices[parsed.command]
            flags = [flag for action in command._actions for flag in action.option_strings]
            hints = "".join(did_you_mean(extra.split("=")[0], flags) for extra in extras if extra.startswith("-"))
            self.error(f"unrecognized arguments: {' '.join(extras)}{hints}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    run.add_argument("--dry-run", action="store_true",
                     help="print the cells, their planned NFE and an estimated time; run nothing")
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
    ls.add_argument("--json", action="store_true",
                    help="print a JSON list (methods with their hyper-parameters, defaults, ranges "
                         "and planned NFE by step count)")
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


def main(argv=None) -> int:
    from bench.commands import COMMANDS
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
