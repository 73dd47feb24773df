"""`diffbench audit SUITE`: re-run a seeded random subset of a suite's stored cells and check that
each reproduces its stored row (MLPerf's TEST01 idea: outputs re-logged must match).

Per cell:
- samples: the sample grid (the audit subset) pixel for pixel, and every sample's stored
  features, must be identical; on another machine kind the grid may differ by up to
  `output_tolerance` levels (1: a last-bit difference rounds a pixel to its neighbouring level)
  and the features are not compared (another kind's extractor moves float16's last bits);
- FID: equal to the stored value on the same machine kind (device, CPU instruction set, torch,
  threads: the same arithmetic), else within `fid_tolerance` (relative);
- NFE: exactly;
- time per image: within the band [stored / (1 + time_band), stored x (1 + time_band)] on the
  same machine kind (not compared across kinds: timing another machine is not an audit).
The re-run goes to a temporary folder: nothing stored is touched.
"""
import dataclasses
import random
import tempfile
from pathlib import Path

import numpy as np

from bench.config import load_suite
from bench.quality.stored_features import load_cell_features
from bench.report.gate import FAIL, PASS, UNJUDGED, Check, cell_title, pixel_check, read_grid
from bench.rows import Row, complete, metric_value
from bench.run.cell import CellRun
from bench.run.cells import run_cell
from bench.run.suite import prepare
from bench.store import ResultStore
from methods.errors import DiffbenchError

MACHINE_KIND = ("device", "device_name", "cpu_capability", "torch", "num_threads")
FID_TOLERANCE = 0.01    # relative, on another machine kind
TIME_BAND = 0.5
OUTPUT_TOLERANCE = 1    # uint8 levels on another kind: a last-bit difference can move a pixel
                        # across a rounding boundary, one level; more means the sampling diverged


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    cells: int = 3
    seed: int = 0
    fid_tolerance: float = FID_TOLERANCE
    time_band: float = TIME_BAND
    output_tolerance: int = OUTPUT_TOLERANCE   # uint8 levels, on another machine kind


@dataclasses.dataclass(frozen=True)
class AuditVerdict:
    cell: str
    samples: Check
    fid: Check
    nfe: Check
    time: Check
    machine: str            # "same kind" or what differs

    def checks(self) -> list[tuple[str, Check]]:
        return [("samples", self.samples), ("fid", self.fid), ("nfe", self.nfe), ("time", self.time)]

    @property
    def failed(self) -> bool:
        return any(check.outcome == FAIL for _, check in self.checks())


def machine_difference(stored: Row, rerun: Row) -> list[str]:
    a, b = stored["provenance"], rerun["provenance"]
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in MACHINE_KIND if a.get(k) != b.get(k)]


def samples_check(stored: Row, rerun: Row, stored_dir: Path, rerun_dir: Path, same_kind: bool,
                  tolerance: int) -> Check:
    """The grid pixel for pixel (exactly on the same kind, within `tolerance` elsewhere) and,
    on the same kind, every sample's features exactly (another kind's extractor arithmetic
    moves features by float16's last bits even for identical samples)."""
    grid = pixel_check(read_grid(rerun_dir, rerun), read_grid(stored_dir, stored),
                       0 if same_kind else tolerance)
    if not (stored["paired"] and rerun["paired"]):
        return grid
    before = load_cell_features(stored_dir, stored["paired"]["features"])
    now = load_cell_features(rerun_dir, rerun["paired"]["features"])
    if before.shape == now.shape and np.array_equal(before, now):
        return Check(grid.outcome, f"{grid.detail}; features of all {len(now)} samples identical")
    gap = float(np.abs(now - before).max()) if before.shape == now.shape else float("inf")
    return Check(FAIL if same_kind else grid.outcome, f"{grid.detail}; features differ by up to {gap:.3g}")


def fid_check(stored: Row, rerun: Row, same_kind: bool, tolerance: float) -> Check:
    before, now = metric_value(stored, "fid"), metric_value(rerun, "fid")
    if before is None or now is None:
        return Check(UNJUDGED, "no FID on both sides")
    if now == before:
        return Check(PASS, f"FID {now:.6g} exactly")
    relative = abs(now - before) / max(abs(before), 1e-12)
    text = f"FID {before:.6g} -> {now:.6g} (relative {relative:.2g})"
    if same_kind:
        return Check(FAIL, text + ": the same machine kind must give the same FID")
    return Check(PASS if relative <= tolerance else FAIL, text + f", tolerance {tolerance:.2%}")


def time_check(stored: Row, rerun: Row, same_kind: bool, band: float) -> Check:
    before, now = (row["time_per_image_s"] and row["time_per_image_s"]["median"] for row in (stored, rerun))
    if not before or not now:
        return Check(UNJUDGED, "no time on both sides")
    ratio = now / before
    text = f"{before * 1e3:.4g} -> {now * 1e3:.4g} ms per image (x{ratio:.2f})"
    if not same_kind:
        return Check(UNJUDGED, text + ": another machine kind, not compared")
    inside = 1 / (1 + band) <= ratio <= 1 + band
    return Check(PASS if inside else FAIL, text + f", band x{1 / (1 + band):.2f}..x{1 + band:.2f}")


def judge_rerun(stored: Row, rerun: Row, stored_dir: Path, rerun_dir: Path,
                options: AuditOptions) -> AuditVerdict:
    differ = machine_difference(stored, rerun)
    same = not differ
    if rerun["status"] != "ok":
        failed = Check(FAIL, f"the re-run failed: {rerun['status']}: {rerun['message']}")
        return AuditVerdict(cell_title(stored), failed, Check(UNJUDGED, ""), Check(UNJUDGED, ""),
                            Check(UNJUDGED, ""), "; ".join(differ) or "same kind")
    nfe = Check(PASS if rerun["nfe"] == stored["nfe"] else FAIL, f"NFE {stored['nfe']} -> {rerun['nfe']}")
    return AuditVerdict(
        cell_title(stored),
        samples_check(stored, rerun, stored_dir, rerun_dir, same, options.output_tolerance),
        fid_check(stored, rerun, same, options.fid_tolerance), nfe,
        time_check(stored, rerun, same, options.time_band), "; ".join(differ) or "same kind")


def stored_rows(store: ResultStore) -> dict[str, Row]:
    """Cell key -> its newest successful stored row."""
    rows, problems = store.read()
    if problems:
        raise DiffbenchError(f"{problems[0]}: repair or drop the damaged row before auditing")
    latest = {}
    for row in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["created_at"] or ""):
        latest[row["cell_key"]] = row
    return latest


def check_options(options: AuditOptions) -> None:
    if options.cells < 1:
        raise DiffbenchError(f"--cells must be at least 1, got {options.cells}")
    if not 0 <= options.fid_tolerance < 1 or not 0 < options.time_band <= 100:
        raise DiffbenchError("--fid-tolerance must be in [0, 1) and --time-band in (0, 100]")
    if not 0 <= options.output_tolerance <= 255:
        raise DiffbenchError(f"--output-tolerance must be 0..255 uint8 levels, got {options.output_tolerance}")


def audit(suite: str, results_root: Path, options: AuditOptions = AuditOptions(),
          plugins=()) -> list[AuditVerdict]:
    """Re-run `options.cells` of the suite's stored cells (drawn with `options.seed`) into a
    temporary folder and judge each against its stored row."""
    check_options(options)
    config = load_suite(suite, plugins=plugins)
    store = ResultStore(results_root, config.name)
    stored = stored_rows(store)
    if not stored:
        raise DiffbenchError(f"no successful rows in {store.rows_path}: run the suite before auditing it")
    with tempfile.TemporaryDirectory(prefix="diffbench-audit-") as scratch:
        ctx = prepare(config, Path(scratch))
        candidates = [run for run in (CellRun.of(ctx, cell) for cell in config.cells) if run.key in stored]
        if not candidates:
            raise DiffbenchError(f"none of {config.name}'s cells has a stored row in {store.rows_path} "
                                 "(the suite, its models or the code changed since): nothing to audit")
        drawn = sorted(random.Random(options.seed).sample(range(len(candidates)),
                                                          min(options.cells, len(candidates))))
        verdicts = []
        for number in drawn:
            run = candidates[number]
            rerun = complete(ctx.store.append(run_cell(run, run.key)))
            verdicts.append(judge_rerun(stored[run.key], rerun, store.directory, ctx.store.directory, options))
        return verdicts
