"""Paired statistics of a table's rows from the features stored beside them (`bench.quality.paired`):
for every two rows the paired bootstrap interval of their FID difference and the permutation
test's decision, from which a row's statistical rank (1 + the rows significantly better than
it: rows tied with the best share rank 1), the pairwise matrix and what pairing buys over the
rows' separate standard errors."""
import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path

from bench.quality.paired import (LEVEL, Difference, bootstrap_fids, difference, mean_difference,
                                  sign_flip_p_value)
from bench.quality.stored_features import load_cell_features, load_cell_per_image, load_reference
from bench.report.board import METRIC_HEADERS, line_name, network_key, ok
from bench.rows import Row, metric_error, metric_value, subfield

Z = 1.96      # the normal quantile of a two-sided 95 % interval, for the unpaired comparison


@dataclasses.dataclass(frozen=True)
class Pairs:
    rows: list[Row]                                   # the rows with stored features, table order
    differences: dict[tuple[str, str], Difference]    # (a, b) cell keys: FID_a - FID_b

    def covers(self, key: str) -> bool:
        return any(r["cell_key"] == key for r in self.rows)

    def better(self, a: str, b: str) -> bool:
        """a's FID is significantly lower than b's (the paired test rejects FID_a = FID_b and
        FID_a - FID_b < 0)."""
        found = self.differences[(a, b)]
        return found.significant and found.value < 0

    def ranks(self, keys: list[str | None]) -> list[int | None]:
        """1 + the number of rows significantly better; None for rows not covered."""
        covered = [k for k in keys if k is not None and self.covers(k)]
        return [1 + sum(self.better(other, key) for other in covered if other != key)
                if key in covered else None for key in keys]

    def unpaired_width(self, a: Row, b: Row) -> float | None:
        """The width of the 95 % interval of the difference from the two rows' own standard
        errors (seed blocks), as if they were independent."""
        errors = metric_error(a, "fid"), metric_error(b, "fid")
        return None if None in errors else 2 * Z * (errors[0] ** 2 + errors[1] ** 2) ** 0.5

    def width_ratios(self) -> list[float]:
        """Unpaired over paired interval width, for every two rows of the same model."""
        ratios = []
        for i, a in enumerate(self.rows):
            for b in self.rows[i + 1:]:
                unpaired = self.unpaired_width(a, b)
                found = self.differences[(a["cell_key"], b["cell_key"])]
                same_model = network_key(a) == network_key(b)
                if same_model and unpaired and found.high > found.low:
                    ratios.append(unpaired / (found.high - found.low))
        return ratios

    def summary(self) -> str:
        """How much narrower pairing makes the interval of a difference, in words."""
        ratios = self.width_ratios()
        if not ratios:
            return ""
        spread = ("one pair" if len(ratios) == 1 else
                  f"median of {len(ratios)} pairs; from {min(ratios):.2g} to {max(ratios):.3g}")
        return (f"Pairing: for two rows of the same model, the {LEVEL:.0%} interval of their FID "
                f"difference from the rows' own standard errors is {statistics.median(ratios):.3g} "
                f"times as wide as the paired one ({spread}, below 1 where pairing did not help), "
                "because both rows draw the same seeds and meet the same reference.")


@dataclasses.dataclass(frozen=True)
class NfeColumn:
    """The paired rows of one model at one NFE: their statistical ranks, the best (lowest FID)
    and the group tied with it (rank 1: no row significantly better)."""
    nfe: float
    model: str
    rows: list[Row]
    ranks: list[int]
    pairs: Pairs

    @property
    def best(self) -> Row:
        return min(self.rows, key=lambda r: metric_value(r, "fid"))

    @property
    def tied(self) -> list[Row]:
        return [row for row, rank in zip(self.rows, self.ranks) if rank == 1]


def nfe_columns(pairs: Pairs) -> list[NfeColumn]:
    """The paired rows grouped by model and NFE (groups of one row left out), ranked within
    their group: the "which solvers are tied at NFE k" view of a low-NFE grid."""
    groups: dict[tuple[str, float], list[Row]] = {}
    for row in pairs.rows:
        if row["nfe"]:
            groups.setdefault((network_key(row), row["nfe"]), []).append(row)
    return [NfeColumn(nfe, model, rows, pairs.ranks([r["cell_key"] for r in rows]), pairs)
            for (model, nfe), rows in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1]))
            if len(rows) > 1]


def board_pairs(rows: list[Row], results_dir: Path) -> Pairs | None:
    """Paired statistics of the successful rows that stored features (None with fewer than two);
    a missing or altered features file is an error that names it."""
    usable = [r for r in rows if ok(r) and r["paired"] and metric_value(r, "fid") is not None]
    if len(usable) < 2:
        return None
    # One fixed reference for every resample: rows of one protocol made on two kinds of CPU
    # stored references equal to their last bits, so the first row's stands for all.
    reference = load_reference(results_dir, usable[0]["paired"]["reference"])
    features = [load_cell_features(results_dir, r["paired"]["features"]) for r in usable]
    resampled = bootstrap_fids(features, reference)
    fids = [metric_value(r, "fid") for r in usable]
    p_values: dict[frozenset, float] = {}      # one test per pair of rows, either order

    def p_value(i: int, j: int) -> Callable[[], float]:
        pair = frozenset((i, j))

        def test() -> float:
            if pair not in p_values:
                p_values[pair] = sign_flip_p_value(features[i], features[j], reference)
            return p_values[pair]
        return test

    differences = {(a["cell_key"], b["cell_key"]): difference(fids[i], fids[j], resampled[i],
                                                              resampled[j], p_value(i, j))
                   for i, a in enumerate(usable) for j, b in enumerate(usable) if i != j}
    return Pairs(usable, differences)


def per_image_lines(title: str, rows: list[Row], results_dir: Path, metric: str) -> list[str]:
    """One sentence: each row's mean `metric` (PSNR, SSIM: higher is better) against the best
    row's over the same images, with the paired t interval; rows whose difference is not
    significant are tied with the best. Nothing when fewer than two rows stored the values."""
    usable = [r for r in rows if ok(r) and metric_value(r, metric) is not None
              and metric in subfield(r, "paired", "features", "per_image", default=())]
    if len(usable) < 2:
        return []
    values = {r["cell_key"]: load_cell_per_image(results_dir, r["paired"]["features"], metric) for r in usable}
    best = max(usable, key=lambda r: metric_value(r, metric))
    name, form = METRIC_HEADERS[metric]
    parts = []
    for row in sorted((r for r in usable if r is not best), key=lambda r: -metric_value(r, metric)):
        found = mean_difference(values[row["cell_key"]], values[best["cell_key"]])
        parts.append(f"{line_name(row)} NFE {row['nfe']:g} {found.value:+.3g} [{found.low:+.3g}, {found.high:+.3g}]"
                     + ("" if found.significant else " (tied)"))
    return [f"{title}: paired {name} against the best row, {line_name(best)} NFE {best['nfe']:g} "
            f"({form.format(metric_value(best, metric))}), each row's mean difference over the same "
            f"images with its {LEVEL:.0%} paired t interval: " + "; ".join(parts) + "."]
