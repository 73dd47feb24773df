"""Training curves from train-curve rows (stored rows only): per model and sampler, FID with its
95 % interval at each training snapshot, against training seconds and steps, and time-to-FID.

A series is one model (recipe) sampled by one sampler (method, steps, hyper-parameters) at every
snapshot. Its interval is FID +- t(0.975, blocks - 1) x the stored seed-block standard error: the
blocks are few (three at 400 samples), so the normal quantile would be too narrow.
Time-to-FID: for a target FID, the first snapshot whose interval reaches it (its lower end at
or below the target); the targets are the series' final FIDs, so each row says how long every
model took to reach every other model's final quality.
"""
from dataclasses import dataclass

from scipy import stats

from bench.report.board import ok
from bench.rows import metric_error, metric_value, subfield


@dataclass(frozen=True)
class CurvePoint:
    step: int
    seconds: float
    images: int
    fid: float
    low: float
    high: float


def series_name(row: dict, varying: list[str]) -> str:
    """Model and sampler, with the hyper-parameters that tell the method's series apart."""
    hparams = ", ".join(f"{k}={row['hparams'][k]}" for k in varying if k in row["hparams"])
    sampler = f"{row['method']} {row['steps']} steps, NFE {row['nfe']:g}"
    return f"{row['model']['recipe']}: {sampler}" + (f" ({hparams})" if hparams else "")


def interval(row: dict) -> tuple[float, float]:
    """FID's 95 % interval from the seed blocks (the value alone when none is stored)."""
    fid, error = metric_value(row, "fid"), metric_error(row, "fid")
    blocks = subfield(row["metrics"]["fid"], "uncertainty", "blocks", default=0)
    if error is None or blocks < 2:
        return fid, fid
    half = float(stats.t.ppf(0.975, blocks - 1)) * error
    return fid - half, fid + half


def varying_hparams(rows: list[dict]) -> dict[str, list[str]]:
    """Per method, the hyper-parameters whose values differ between its rows."""
    seen: dict[str, dict[str, set]] = {}
    for row in rows:
        for key, value in row["hparams"].items():
            seen.setdefault(row["method"], {}).setdefault(key, set()).add(repr(value))
    return {method: sorted(k for k, values in keys.items() if len(values) > 1) for method, keys in seen.items()}


def training_series(rows: list[dict]) -> dict[str, list[CurvePoint]]:
    """Series name -> its successful snapshots' points, by step."""
    series: dict[str, list[CurvePoint]] = {}
    rows = [r for r in rows if r.get("task") == "train-curve" and ok(r) and metric_value(r, "fid") is not None]
    varying = varying_hparams(rows)
    for row in rows:
        training = row["training"]
        series.setdefault(series_name(row, varying.get(row["method"], [])), []).append(CurvePoint(
            training["step"], training["seconds"], training["images_seen"],
            metric_value(row, "fid"), *interval(row)))
    return {name: sorted(points, key=lambda p: p.step) for name, points in sorted(series.items())}


def first_reaching(points: list[CurvePoint], target: float) -> CurvePoint | None:
    return next((p for p in points if p.low <= target), None)


def time_to_fid(series: dict[str, list[CurvePoint]]) -> tuple[list[tuple[str, float]], dict]:
    """The targets (each series' final FID, easiest first) and, per series and target, the
    first point reaching it (None: not reached within the run)."""
    targets = sorted(((name, points[-1].fid) for name, points in series.items()),
                     key=lambda t: -t[1])
    reached = {name: {target: first_reaching(points, value) for target, value in targets}
               for name, points in series.items()}
    return targets, reached


def point_text(point: CurvePoint | None) -> str:
    return "not reached" if point is None else f"step {point.step} ({point.seconds:.0f} s)"


def curve_table(series: dict[str, list[CurvePoint]]) -> tuple[list[str], list[list[str]]]:
    """FID [interval] per series (rows) and snapshot step (columns), as text."""
    steps = sorted({p.step for points in series.values() for p in points})
    header = ["model: sampler"] + [f"step {s}" for s in steps]
    body = []
    for name, points in series.items():
        by_step = {p.step: p for p in points}
        body.append([name] + [f"{by_step[s].fid:.1f} [{by_step[s].low:.1f}, {by_step[s].high:.1f}]"
                              if s in by_step else "-" for s in steps])
    return header, body


def images_note(series: dict[str, list[CurvePoint]]) -> str:
    """How many images a step is: the batch size, the same for every series or each one's."""
    batches = {name: points[0].images // points[0].step for name, points in series.items()}
    if len(set(batches.values())) == 1:
        return f"Images seen = step x {next(iter(batches.values()))} (every model's batch size)."
    return "Images seen = step x batch size: " + "; ".join(f"{n}: {b}" for n, b in batches.items()) + "."


def time_to_fid_table(series: dict[str, list[CurvePoint]]) -> tuple[list[str], list[list[str]]]:
    """Per series (rows), when it first reached each target (columns: whose final FID)."""
    targets, reached = time_to_fid(series)
    header = ["model: sampler"] + [f"{i + 1}: FID {value:.1f}" for i, (_, value) in enumerate(targets)]
    body = [[name] + [point_text(reached[name][target]) for target, _ in targets] for name in series]
    return header, body


def target_legend(series: dict[str, list[CurvePoint]]) -> str:
    targets, _ = time_to_fid(series)
    return "Targets: " + "; ".join(f"{i + 1}: the final FID of {name} ({value:.2f})"
                                   for i, (name, value) in enumerate(targets)) + "."
