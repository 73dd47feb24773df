"""`diffbench compare BASELINE CURRENT`: one verdict per cell on speed, quality and outputs, and
one exit code (MLPerf's idea: a performance result counts only with its accuracy and its
outputs checked).

- speed: the timed rounds, judged as `bench.speed_regression.judge` judges (slower by more than
  `min_effect` with a one-sided Mann-Whitney p < alpha is a regression);
- quality: FID inside the window the suite declares (`[gate] fid = [lo, hi]`, stored in each
  row as `gate`, or `--fid-window`), and FID's paired change (both rows' stored features: the
  paired bootstrap interval and permutation test) not significantly worse; without stored
  features, worse by more than 2 x the two rows' combined standard error;
- outputs: the audit subset, each row's sample grid (a lossless PNG of its first samples, in
  seed order), pixel for pixel: identical, or within `output_tolerance` uint8 levels (for
  another device, whose floating point differs), and the same NFE.

A cell fails when any of the three fails, when the current run failed it, or when the current
set lacks it. A pytest-benchmark JSON on both sides gates speed alone.
"""
import dataclasses
import json
import math
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from bench.quality.paired import Difference, bootstrap_fids, difference, sign_flip_p_value
from bench.quality.stored_features import load_cell_features, load_reference
from bench.report.markdown import text_table
from bench.report.text import clean_text
from bench.rows import Row, metric_error, metric_value, subfield
from bench.speed_regression import (ALPHA, MIN_EFFECT, Timings, compare_speed, load_timings,
                                    same_machine, judge)
from bench.store import read_rows
from methods.errors import DiffbenchError

Z = 2.0            # the unpaired rule: a change beyond 2 x the combined standard error
PASS, FAIL, UNJUDGED = "pass", "fail", "n/a"


@dataclasses.dataclass(frozen=True)
class Check:
    """One dimension of one cell: its outcome (PASS, FAIL or UNJUDGED) and what was found."""
    outcome: str
    detail: str


@dataclasses.dataclass(frozen=True)
class CellVerdict:
    cell: str
    speed: Check
    quality: Check
    outputs: Check
    status: Check = Check(PASS, "")     # the cell itself: run, failed, missing or new

    def checks(self) -> list[tuple[str, Check]]:
        return [("cell", self.status), ("speed", self.speed), ("quality", self.quality),
                ("outputs", self.outputs)]

    @property
    def failed(self) -> bool:
        return any(check.outcome == FAIL for _, check in self.checks())


@dataclasses.dataclass(frozen=True)
class GateOptions:
    min_effect: float = MIN_EFFECT
    alpha: float = ALPHA
    fid_window: tuple[float, float] | None = None    # overrides the rows' own windows
    output_tolerance: int = 0                        # uint8 levels
    allow_different_machines: bool = False


def cell_identity(row: Row) -> str:
    """What makes two rows the same experiment, whatever code, machine or checkpoint ran it:
    the task, method, model (by recipe, not weights), snapshot, cascade stage, steps,
    hyper-parameters, data and seeds."""
    model = row["model"] or {}
    return json.dumps([row["task"], row["method"], row["label"], model.get("recipe"), row["hparams"],
                       row["steps"], row["dataset"], row["n_samples"], row["seed"],
                       row["training"] and row["training"]["step"],
                       row["cascade"] and row["cascade"]["superres"]], sort_keys=True)


def cell_title(row: Row) -> str:
    return f"{row['label'] or row['method']}, {row['steps']} steps"


def paired_fid_difference(current: Row, baseline: Row, current_dir: Path | None,
                          baseline_dir: Path | None) -> Difference | None:
    """FID(current) - FID(baseline) from both rows' stored features, when both hold them and
    drew the same seeds against the same reference (else None)."""
    if current_dir is None or baseline_dir is None or not (current["paired"] and baseline["paired"]):
        return None
    if (current["protocol_fingerprint"] != baseline["protocol_fingerprint"]
            or current["seed_range"] != baseline["seed_range"]):
        return None
    try:
        reference = load_reference(current_dir, current["paired"]["reference"])
        features = [load_cell_features(current_dir, current["paired"]["features"]),
                    load_cell_features(baseline_dir, baseline["paired"]["features"])]
    except DiffbenchError:
        return None
    resampled = bootstrap_fids(features, reference)
    return difference(metric_value(current, "fid"), metric_value(baseline, "fid"), resampled[0],
                      resampled[1], lambda: sign_flip_p_value(features[0], features[1], reference))


def speed_check(current: Row, baseline: Row, options: GateOptions) -> Check:
    rounds = [subfield(row, "time_per_image_s", "rounds", default=[]) for row in (baseline, current)]
    if min(map(len, rounds)) < 2:
        return Check(UNJUDGED, "no timed rounds on both sides")
    ratio, p, verdict = judge(rounds[0], rounds[1], options.min_effect, options.alpha)
    text = speed_text(statistics.median(rounds[0]), statistics.median(rounds[1]), ratio, p, verdict)
    return Check(FAIL if verdict == "regression" else PASS if verdict != "too few rounds" else UNJUDGED,
                 text)


def speed_text(before: float, now: float, ratio: float, p: float, verdict: str) -> str:
    """Medians in milliseconds per round (per image for rows), their ratio and the test."""
    return f"{before * 1e3:.4g} -> {now * 1e3:.4g} ms (x{ratio:.3f}, p={p:.2g}): {verdict}"


def window_check(fid: float, window) -> Check:
    low, high = window
    inside = low <= fid <= high
    return Check(PASS if inside else FAIL,
                 f"FID {fid:.4g} {'inside' if inside else 'outside'} [{low:g}, {high:g}]")


def change_check(current: Row, baseline: Row, current_dir, baseline_dir) -> Check:
    """FID's change from the baseline: paired where both rows stored features, else against
    the combined standard error."""
    now, before = metric_value(current, "fid"), metric_value(baseline, "fid")
    if now == before:
        return Check(PASS, f"FID {now:.6g} unchanged")
    found = paired_fid_difference(current, baseline, current_dir, baseline_dir)
    if found is not None:
        worse = found.significant and found.value > 0
        return Check(FAIL if worse else PASS,
                     f"FID {before:.4g} -> {now:.4g}, paired change {found.value:+.3g} "
                     f"[{found.low:+.3g}, {found.high:+.3g}], p={found.p_value:.2g}"
                     + (": worse" if worse else ""))
    if current["protocol_fingerprint"] != baseline["protocol_fingerprint"]:
        return Check(UNJUDGED, f"FID {before:.4g} -> {now:.4g}: metric protocols differ")
    errors = [metric_error(row, "fid") for row in (current, baseline)]
    if None in errors:
        return Check(UNJUDGED, f"FID {before:.4g} -> {now:.4g}: no interval on both sides")
    bound = Z * math.hypot(*errors)
    worse = now - before > bound
    return Check(FAIL if worse else PASS, f"FID {before:.4g} -> {now:.4g} (+-{bound:.3g})"
                 + (": worse" if worse else ""))


def quality_check(current: Row, baseline: Row | None, current_dir, baseline_dir,
                  options: GateOptions) -> Check:
    fid = metric_value(current, "fid")
    if fid is None:
        return Check(UNJUDGED, "no FID")
    window = options.fid_window or subfield(current, "gate", "fid")
    checks = ([window_check(fid, window)] if window else []) + (
        [change_check(current, baseline, current_dir, baseline_dir)]
        if baseline is not None and metric_value(baseline, "fid") is not None else [])
    if not checks:
        return Check(UNJUDGED, f"FID {fid:.4g}: no window and no baseline")
    outcome = FAIL if any(c.outcome == FAIL for c in checks) else (
        PASS if any(c.outcome == PASS for c in checks) else UNJUDGED)
    return Check(outcome, "; ".join(c.detail for c in checks))


def read_grid(directory: Path | None, row: Row) -> np.ndarray | None:
    """A row's sample grid as uint8 pixels (None when the row or its folder has none); the
    stored path must stay inside the results folder."""
    if directory is None or not row["samples_grid"]:
        return None
    path = (directory / row["samples_grid"]).resolve()
    if directory.resolve() not in path.parents or not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def pixel_check(current: np.ndarray | None, baseline: np.ndarray | None, tolerance: int) -> Check:
    """Two audit subsets pixel for pixel: identical, within `tolerance` levels, or changed."""
    if current is None or baseline is None:
        return Check(UNJUDGED, "no sample grid on both sides")
    if current.shape != baseline.shape:
        return Check(FAIL, f"sample grids differ in shape: {baseline.shape} -> {current.shape}")
    gap = np.abs(current.astype(np.int16) - baseline.astype(np.int16))
    if not gap.any():
        return Check(PASS, "audit samples bit-identical")
    changed, largest = int(np.count_nonzero(gap.any(axis=-1))), int(gap.max())
    text = f"{changed} of {gap.shape[0] * gap.shape[1]} pixels differ, by up to {largest} levels"
    return Check(PASS if largest <= tolerance else FAIL,
                 text + (f" (tolerance {tolerance})" if largest <= tolerance else ""))


def outputs_check(current: Row, baseline: Row, current_dir, baseline_dir, tolerance: int) -> Check:
    if current["nfe"] != baseline["nfe"]:
        return Check(FAIL, f"NFE {baseline['nfe']} -> {current['nfe']}")
    return pixel_check(read_grid(current_dir, current), read_grid(baseline_dir, baseline), tolerance)


def judge_cell(current: Row, baseline: Row, current_dir, baseline_dir, options: GateOptions) -> CellVerdict:
    if current["status"] != "ok":
        failed = Check(FAIL, f"the current run failed: {current['status']}: {current['message']}")
        skipped = Check(UNJUDGED, "")
        return CellVerdict(cell_title(current), skipped, skipped, skipped, failed)
    return CellVerdict(cell_title(current), speed_check(current, baseline, options),
                       quality_check(current, baseline, current_dir, baseline_dir, options),
                       outputs_check(current, baseline, current_dir, baseline_dir,
                                     options.output_tolerance))


def latest_completed(rows: list[Row]) -> dict[str, Row]:
    """Cell identity -> its newest row that ran (an ok row wins over a failed one)."""
    chosen = {}
    for row in sorted(rows, key=lambda r: (r["status"] == "ok", r["created_at"] or "")):
        chosen[cell_identity(row)] = row
    return chosen


def gate_rows(baseline: list[Row], current: list[Row], baseline_dir: Path | None,
              current_dir: Path | None, options: GateOptions = GateOptions()) -> list[CellVerdict]:
    before, now = latest_completed(baseline), latest_completed(current)
    verdicts, unjudged = [], Check(UNJUDGED, "")
    for key in sorted(set(before) | set(now), key=lambda k: cell_title((now.get(k) or before[k]))):
        if key not in now:
            verdicts.append(CellVerdict(cell_title(before[key]), unjudged, unjudged, unjudged,
                                        Check(FAIL, "missing from the current set")))
        elif key not in before or before[key]["status"] != "ok":
            row = now[key]
            quality = quality_check(row, None, current_dir, None, options) if row["status"] == "ok" \
                else unjudged
            status = Check(FAIL, f"failed: {row['message']}") if row["status"] != "ok" else \
                Check(PASS, "new (no successful baseline)")
            verdicts.append(CellVerdict(cell_title(row), unjudged, quality, unjudged, status))
        else:
            verdicts.append(judge_cell(now[key], before[key], current_dir, baseline_dir, options))
    return verdicts


def gate_timings(baseline: Timings, current: Timings, options: GateOptions) -> list[CellVerdict]:
    """Two pytest-benchmark files: speed alone."""
    unjudged = Check(UNJUDGED, "")
    verdicts = []
    for v in compare_speed(baseline, current, options.min_effect, options.alpha,
                           options.allow_different_machines):
        if v.ratio is None:
            status = Check(FAIL, "missing from the current set") if v.verdict == "missing" else \
                Check(PASS, "new")
            verdicts.append(CellVerdict(v.name, unjudged, unjudged, unjudged, status))
            continue
        outcome = FAIL if v.verdict == "regression" else UNJUDGED if v.verdict == "too few rounds" else PASS
        speed = Check(outcome, speed_text(v.baseline_median, v.current_median, v.ratio, v.p_value,
                                          v.verdict) + "".join(f"; {w}" for w in v.warnings))
        verdicts.append(CellVerdict(v.name, speed, unjudged, unjudged))
    return verdicts


def read_side(path: str | Path) -> tuple[str, object, Path | None]:
    """("rows", rows, results folder) or ("pytest", Timings, None)."""
    path = Path(path)
    rows_path = path / "rows.jsonl" if path.is_dir() else path
    if rows_path.suffix != ".jsonl":
        return "pytest", load_timings(path), None
    if not rows_path.is_file():
        raise DiffbenchError(f"{str(rows_path)!r} does not exist: give a results folder, a "
                             "rows.jsonl or a pytest-benchmark JSON file")
    rows, problems = read_rows(rows_path)
    if problems:
        raise DiffbenchError(f"{problems[0]}: repair or drop the damaged row before comparing")
    if not rows:
        raise DiffbenchError(f"{str(rows_path)!r} holds no rows: nothing to compare")
    return "rows", rows, rows_path.parent


def machine_of(row: Row) -> dict:
    p = row["provenance"]
    return {k: p.get(k) for k in ("device", "device_name", "cpu_capability", "num_threads", "torch", "cuda")}


def check_same_machine(baseline: list[Row], current: list[Row], options: GateOptions) -> None:
    if options.allow_different_machines:
        return
    sides = [Timings(name, machine_of(rows[0]), {}) for name, rows in
             (("baseline", baseline), ("current", current))]
    differ = same_machine(*sides)
    if differ:
        key = differ[0]
        raise DiffbenchError(f"baseline and current come from different machines ({key}: "
                             f"{sides[0].machine[key]!r} vs {sides[1].machine[key]!r}); pass "
                             "--allow-different-machines (and --output-tolerance) to compare them")


def compare(baseline_path, current_path, options: GateOptions = GateOptions()) -> list[CellVerdict]:
    kinds = [read_side(p) for p in (baseline_path, current_path)]
    (kind_b, baseline, dir_b), (kind_c, current, dir_c) = kinds
    if kind_b != kind_c:
        raise DiffbenchError("compare needs the same kind on both sides: two result sets, or two "
                             "pytest-benchmark JSON files")
    if kind_b == "pytest":
        return gate_timings(baseline, current, options)
    check_same_machine(baseline, current, options)
    return gate_rows(baseline, current, dir_b, dir_c, options)


def verdict_lines(verdicts) -> list[str]:
    """The console table: one line per cell (a gate's or an audit's verdict) and per check
    that says something."""
    lines = []
    for v in verdicts:
        lines.append(f"{'FAIL' if v.failed else 'pass'}  {clean_text(v.cell)}")
        for name, check in v.checks():
            if check.detail:
                lines.append(f"      {name:8s}{check.outcome:5s} {clean_text(check.detail)}")
    return lines


def summary_markdown(verdicts: list[CellVerdict], options: GateOptions) -> str:
    """A short Markdown summary for a CI job page (every stored string escaped)."""
    failed = [v for v in verdicts if v.failed]
    head = (f"**diffbench compare: {len(failed)} of {len(verdicts)} cell(s) failed**" if failed
            else f"**diffbench compare: all {len(verdicts)} cell(s) pass**")

    def text(check: Check) -> str:
        return f"{check.outcome}: {check.detail}" if check.detail else check.outcome

    body = [[v.cell + (f" ({v.status.detail})" if v.status.detail else ""),
             "FAIL" if v.failed else "pass", text(v.speed), text(v.quality), text(v.outputs)]
            for v in failed + [v for v in verdicts if not v.failed]]
    rules = (f"speed fails when slower by more than {options.min_effect:.0%} with Mann-Whitney p < "
             f"{options.alpha:g}; quality when FID leaves its window or is significantly worse; "
             f"outputs when an audit sample differs by more than {options.output_tolerance} "
             "level(s) or NFE changed")
    return "\n".join([head, ""] + text_table("Cells", ["cell", "verdict", "speed", "quality",
                                                        "outputs"], body, rules)) + "\n"
