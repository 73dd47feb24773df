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


def cell_identity(row: dict) -> str:
    """What makes two rows the same experiment, whatever code, machine or checkpoint ran it."""
    return json.dumps([row.get("task"), row.get("method"), row.get("hparams"), row.get("steps"),
                       row.get("dataset"), row.get("n_samples"), row.get("seed")], sort_keys=True)


def cell_name(row: dict) -> str:
    return f"{row.get('label') or row.get('method')} ({hparams_text(row)}), {row.get('steps')} steps"


def _stored(row: dict, name: str) -> tuple[float | None, float | None]:
    stored = (row.get("metrics") or {}).get(name) or {}
    return stored.get("value"), (stored.get("uncertainty") or {}).get("value")


def metric_verdict(change, error, higher_is_better: bool) -> str:
    if error is None:
        return "no interval"
    if abs(change) <= Z * error:
        return "no change"
    return "better" if (change > 0) == higher_is_better else "worse"


def compare_metric(name: str, current: dict, baseline: dict) -> Delta:
    (a, ua), (b, ub) = _stored(current, name), _stored(baseline, name)
    header = METRIC_HEADERS.get(name, (name, ""))[0]
    higher = bool(((current.get("metrics") or {}).get(name) or {}).get("higher_is_better"))
    if a is None or b is None:
        return Delta(cell_name(current), header, b, a, None, "missing on one side")
    if current.get("protocol_fingerprint") != baseline.get("protocol_fingerprint"):
        return Delta(cell_name(current), header, b, a, None, "not comparable (metric protocol differs)")
    error = None if ua is None or ub is None else math.hypot(ua, ub)
    interval = None if error is None else Z * error
    return Delta(cell_name(current), header, b, a, interval, metric_verdict(a - b, error, higher))


def compare_time(current: dict, baseline: dict) -> Delta | None:
    a, b = ms_per_image(current), ms_per_image(baseline)
    if a is None or b is None:
        return None
    spread = math.hypot(*((r.get("time_per_image_s") or {}).get("iqr") or 0.0 for r in (current, baseline))) * 1e3
    interval = max(spread, TIME_MIN_EFFECT * b)
    verdict = "no change" if abs(a - b) <= interval else ("slower" if a > b else "faster")
    return Delta(cell_name(current), "time / image (ms)", b, a, interval, verdict)


def compare_rows(current: list[dict], baseline: list[dict]) -> tuple[list[Delta], list[str], list[str]]:
    """Deltas for every cell both sets hold successfully, then the cells only one set holds."""
    before = {cell_identity(r): r for r in baseline if ok(r)}
    now = {cell_identity(r): r for r in current if ok(r)}
    deltas = []
    for key in sorted(set(before) & set(now), key=lambda k: cell_name(now[k])):
        a, b = now[key], before[key]
        names = [n for n in (a.get("metrics") or {}) if n in (b.get("metrics") or {})]
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
