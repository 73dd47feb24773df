"""Two result sets side by side (`diffbench report A --against B`): per cell and quantity, the
change from B (baseline) to A (current) and a verdict that respects the uncertainty.

Verdict rules, written once here and in the report's note:
- a quality metric changes only when |delta| > 2 x sqrt(u_A^2 + u_B^2), u being each row's stored
  standard error (about a 95 % interval for a difference); without an error on both sides the
  verdict is "no interval"; rows measured under different metric protocols are "not comparable";
- time per image changes only when |delta| exceeds both 5 % of the baseline and the two runs'
  combined spread of timed rounds, sqrt(IQR_A^2 + IQR_B^2).
"""
import json
import math
from dataclasses import dataclass

from bench.report.board import METRIC_HEADERS, hparams_text, ms_per_image, ok
from bench.rows import Row, higher_is_better, metric_error, metric_value, time_iqr

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


def cell_identity(row: Row) -> str:
    """What makes two rows the same experiment, whatever code, machine or checkpoint ran it."""
    return json.dumps([row["task"], row["method"], row["hparams"], row["steps"], row["dataset"],
                       row["n_samples"], row["seed"]], sort_keys=True)


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
    a, b = ms_per_image(current), ms_per_image(baseline)
    if a is None or b is None:
        return None
    spread = math.hypot(time_iqr(current), time_iqr(baseline)) * 1e3
    interval = max(spread, TIME_MIN_EFFECT * b)
    verdict = "no change" if abs(a - b) <= interval else ("slower" if a > b else "faster")
    return Delta(cell_name(current), "time / image (ms)", b, a, interval, verdict)


def compare_rows(current: list[Row], baseline: list[Row]) -> tuple[list[Delta], list[str], list[str]]:
    """Deltas for every cell both sets hold successfully, then the cells only one set holds."""
    before = {cell_identity(r): r for r in baseline if ok(r)}
    now = {cell_identity(r): r for r in current if ok(r)}
    deltas = []
    for key in sorted(set(before) & set(now), key=lambda k: cell_name(now[k])):
        a, b = now[key], before[key]
        names = [n for n in a["metrics"] if n in b["metrics"]]
        deltas += [compare_metric(n, a, b) for n in names]
        timing = compare_time(a, b)
        deltas += [timing] if timing else []
    only_current = sorted(cell_name(now[k]) for k in set(now) - set(before))
    only_baseline = sorted(cell_name(before[k]) for k in set(before) - set(now))
    return deltas, only_current, only_baseline


def number(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


RULES = ("A quality change is called only when it exceeds 2 x the combined standard error of the "
         "two rows; a time change only when it exceeds 5 % and the combined spread of timed rounds.")
