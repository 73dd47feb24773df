"""Two result sets side by side (`diffbench report A --against B`): per cell and quantity, the
change from B (baseline) to A (current) and a verdict that respects the uncertainty.

Verdict rules, written once here and in the report's note:
- FID, when both rows stored their features (same seeds, same reference): the paired bootstrap
  interval of the difference (`bench.quality.paired`); better or worse only when the paired
  permutation test rejects no difference (p <= 0.05);
- a quality metric changes only when |delta| > 2 x sqrt(u_A^2 + u_B^2), u being each row's stored
  standard error (about a 95 % interval for a difference); without an error on both sides the
  verdict is "no interval"; rows measured under different metric protocols are "not comparable";
- time per image, when both rows hold their timed rounds, is judged as `diffbench compare`
  judges (`bench.speed_regression.judge`): slower or faster only for a change beyond 5 % with a one-sided
  Mann-Whitney p < 0.01, and "too few rounds" when no ordering of that many rounds could reach
  it; rows without rounds fall back to: beyond both 5 % of the baseline and the two runs'
  combined spread of timed rounds, sqrt(IQR_A^2 + IQR_B^2).
"""
import math
from dataclasses import dataclass
from pathlib import Path

from bench.quality.paired import DECISION
from bench.report.board import METRIC_HEADERS, hparams_text, ms_per_image, ok
from bench.report.gate import cell_identity, paired_fid_difference
from bench.rows import Row, higher_is_better, metric_error, metric_value, subfield, time_iqr
from bench.speed_regression import judge

TIME_MIN_EFFECT = 0.05
Z = 2.0


@dataclass(frozen=True)
class Delta:
    cell: str
    quantity: str
    baseline: float | None
    current: float | None
    interval: float | None
    verdict: str

    @property
    def change(self) -> float | None:
        return None if self.baseline is None or self.current is None else self.current - self.baseline


def cell_name(row: Row) -> str:
    return f"{row['label'] or row['method']} ({hparams_text(row)}), {row['steps']} steps"


def _stored(row: Row, name: str) -> tuple[float | None, float | None]:
    return metric_value(row, name), metric_error(row, name)


def metric_verdict(change, error, higher_is_better: bool) -> str:
    if error is None:
        return "no interval"
    if abs(change) <= Z * error:
        return "no change"
    return "better" if (change > 0) == higher_is_better else "worse"


def compare_metric(name: str, current: Row, baseline: Row) -> Delta:
    (a, ua), (b, ub) = _stored(current, name), _stored(baseline, name)
    header = METRIC_HEADERS.get(name, (name, ""))[0]
    higher = higher_is_better(current, name)
    if a is None or b is None:
        return Delta(cell_name(current), header, b, a, None, "missing on one side")
    if current["protocol_fingerprint"] != baseline["protocol_fingerprint"]:
        return Delta(cell_name(current), header, b, a, None, "not comparable (metric protocol differs)")
    error = None if ua is None or ub is None else math.hypot(ua, ub)
    interval = None if error is None else Z * error
    return Delta(cell_name(current), header, b, a, interval, metric_verdict(a - b, error, higher))


def compare_time(current: Row, baseline: Row) -> Delta | None:
    """With both rows' timed rounds: the speed regression test of `diffbench compare` (a
    5 % effect and Mann-Whitney p < 0.01, or "too few rounds"); else the IQR rule."""
    a, b = ms_per_image(current), ms_per_image(baseline)
    if a is None or b is None:
        return None
    rounds_now, rounds_before = (subfield(r, "time_per_image_s", "rounds", default=[])
                                 for r in (current, baseline))
    spread = math.hypot(time_iqr(current), time_iqr(baseline)) * 1e3
    interval = max(spread, TIME_MIN_EFFECT * b)
    if len(rounds_now) >= 2 and len(rounds_before) >= 2:
        _, _, verdict = judge(rounds_before, rounds_now, TIME_MIN_EFFECT)
        verdict = {"regression": "slower"}.get(verdict, verdict)
    else:
        verdict = "no change" if abs(a - b) <= interval else ("slower" if a > b else "faster")
    return Delta(cell_name(current), "time / image (ms)", b, a, interval, verdict)


def paired_fid(current: Row, baseline: Row, current_dir: Path | None,
               baseline_dir: Path | None) -> Delta | None:
    """FID's change from the two rows' stored features (`bench.report.gate`): the paired
    bootstrap interval of the difference and the paired permutation test's verdict."""
    found = paired_fid_difference(current, baseline, current_dir, baseline_dir)
    if found is None:
        return None
    verdict = "no change" if found.tied else "better" if found.value < 0 else "worse"
    return Delta(cell_name(current), "FID (paired)", metric_value(baseline, "fid"),
                 metric_value(current, "fid"), max(found.high - found.value, found.value - found.low),
                 verdict)


def compare_rows(current: list[Row], baseline: list[Row], current_dir: Path | None = None,
                 baseline_dir: Path | None = None) -> tuple[list[Delta], list[str], list[str]]:
    """Deltas for every cell both sets hold successfully, then the cells only one set holds.
    FID is compared paired where both rows stored features of the same seeds and reference."""
    before = {cell_identity(r): r for r in baseline if ok(r)}
    now = {cell_identity(r): r for r in current if ok(r)}
    deltas = []
    for key in sorted(set(before) & set(now), key=lambda k: cell_name(now[k])):
        a, b = now[key], before[key]
        names = [n for n in a["metrics"] if n in b["metrics"]]
        paired = paired_fid(a, b, current_dir, baseline_dir) if "fid" in names else None
        deltas += [paired if n == "fid" and paired else compare_metric(n, a, b) for n in names]
        timing = compare_time(a, b)
        deltas += [timing] if timing else []
    only_current = sorted(cell_name(now[k]) for k in set(now) - set(before))
    only_baseline = sorted(cell_name(before[k]) for k in set(before) - set(now))
    return deltas, only_current, only_baseline


def number(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


RULES = ("FID (paired): the change is called only when it is significant by "
         f"{DECISION} (the rows' stored features, the same seeds and reference). Any other quality "
         "change is called only when it exceeds 2 x the combined standard error of the two rows; a time change only when it exceeds 5 % and a Mann-Whitney test on the timed "
         "rounds gives p < 0.01 (\"too few rounds\" when no outcome of that many rounds could), or, "
         "for rows without rounds, the combined spread of timed rounds.")


TABLE_TITLE = "Each cell against the baseline"


def comparison_table(deltas: list[Delta], only_current: list[str], only_baseline: list[str]
                     ) -> tuple[list[str], list[list[str]], list[str]]:
    """The comparison as plain texts, for every format: header, one line per quantity compared,
    and the cells found on one side only."""
    header = ["cell", "quantity", "baseline", "current", "change", "interval", "verdict"]
    body = [[d.cell, d.quantity, number(d.baseline), number(d.current), number(d.change),
             "n/a" if d.interval is None else "± " + number(d.interval), d.verdict] for d in deltas]
    unmatched = ([f"only in this result set: {c}" for c in only_current]
                 + [f"only in the baseline: {c}" for c in only_baseline])
    return header, body, unmatched

