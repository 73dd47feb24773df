"""The leaderboard as data, before any format: which rows are ranked together, which columns
exist, each cell's value, uncertainty and place (best / second). Markdown, LaTeX and HTML only
decide how a cell looks.

Rows are ranked together only when task and metric protocol fingerprint agree; a group is one
table. Within it, places and ranks are per model (the same network: checkpoint hash), because a
sampler's number is a property of the sampler and the network together; a group whose rows use
several models also gets an across-models view that ranks every row and says so. Failed rows
are listed in their group but take no place and no rank. Derived diagnostics (the sampler
overhead ratios) are shown but never ranked, and a value outside what the quantity can be is
marked.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from bench.quality.paired import DECISION
from bench.rows import Row, higher_is_better, is_scored, metric_error, metric_value, subfield

TASK_TITLES = {"generate": "Generation", "superres": "Super-resolution", "img2img": "Image-to-image",
               "inpaint": "Inpainting", "denoise": "Denoising", "anagram": "Anagrams and hybrids",
               "train-curve": "Training convergence"}
METRIC_HEADERS = {"fid": ("FID", "{:.3f}"), "fid_infinity": ("FID∞", "{:.3f}"),
                  "fd": ("FD", "{:.3f}"), "kid": ("KID", "{:.4g}"), "cmmd": ("CMMD", "{:.4g}"),
                  "cmmd_unbiased": ("CMMD (unbiased)", "{:.4g}"),
                  "precision": ("precision", "{:.3f}"), "recall": ("recall", "{:.3f}"),
                  "density": ("density", "{:.3f}"), "coverage": ("coverage", "{:.3f}"),
                  "isc": ("IS", "{:.3f}"),
                  "class_acc": ("class acc", "{:.3f}"), "psnr": ("PSNR", "{:.2f}"),
                  "ssim": ("SSIM", "{:.4f}"), "lr_mse": ("LR MSE", "{:.3g}"),
                  "known_error": ("known-region max error", "{:g}"),
                  "fid_view_b": ("FID view b", "{:.3f}"), "view_a_acc": ("acc view a", "{:.3f}"),
                  "view_b_acc": ("acc view b", "{:.3f}"), "both_acc": ("both views", "{:.3f}")}


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    get: Callable[[Row], float | None]
    higher_is_better: bool | None      # None: not ranked, no best / second
    fmt: str
    metric: str | None = None          # the key in row["metrics"], for uncertainty and flags
    rank_of: str | None = None         # a rank column: the key of the metric it ranks
    plausible: tuple[float, float] | None = None   # values outside are marked SUSPECT


@dataclass(frozen=True)
class Cell:
    text: str                 # the formatted value, a flag ("inf") or "n/a"; plain text
    value: float | None       # what sorting uses
    spread: str | None = None  # the formatted uncertainty, when stored
    place: int | None = None  # 1 best, 2 second
    suspect: bool = False      # outside the column's plausible range
    rank: int | None = None    # a pivot cell's paired rank within its NFE column


@dataclass
class Group:
    task: str
    fingerprint: str
    rows: list[Row]


@dataclass
class Board:
    group: Group
    columns: list[Column]
    rows: list[Row]           # ordered as the table
    cells: list[list[Cell]]    # one list per row, one Cell per column
    across_models: bool = False          # ranked across models (the cross-model view)
    cross: "Board | None" = None         # the cross-model view of a per-model board
    pairs: object = None                 # bench.report.pairs.Pairs, when features are stored

    @property
    def title(self) -> str:
        title = TASK_TITLES.get(self.group.task, self.group.task)
        mask = subfield(self.group.rows[0]["protocol"], "inpaint", "mask")
        title += f" (mask: {mask})" if mask else ""
        level = self.group.rows[0]["protocol"].get("denoise")
        title += f" (t = {level['t']}, sigma = {level['sigma']:.3f})" if level else ""
        title += f", protocol {self.group.fingerprint}"
        return title + (", across models" if self.across_models else "")

    @property
    def ranking(self) -> str:
        """What bold, underline and ranks compare, in words."""
        if self.across_models:
            return ("Across models: every row is ranked against every other, so a rank compares a "
                    "sampler together with its network, not the sampler alone."
                    + (f" FID's rank is statistical ({DECISION})." if self.pairs is not None else ""))
        text = "Bold, underline and ranks compare rows of the same model (the same checkpoint)."
        if self.pairs is not None:
            text += (" FID's rank is 1 + the rows of the same model whose FID is significantly "
                     f"lower ({DECISION}): rows statistically tied with the best share rank 1. "
                     + self.pairs.summary()).rstrip()
        return text


def ms_per_image(row: Row) -> float | None:
    timing = row["time_per_image_s"]
    return None if not timing or timing["median"] is None else timing["median"] * 1e3


def peak_mib(row: Row) -> float | None:
    memory = row["memory"]
    return None if not memory or memory.get("peak_bytes") is None else memory["peak_bytes"] / 2**20


# A sampler's time over NFE bare forward passes: below 1 cannot be (the sampler makes those
# passes), so under 0.95 is a timing artefact; above 1.5 the sampler spends half as long again
# outside the network, more than any built-in does (worth checking for per-step host work).
OVERHEAD_PLAUSIBLE = (0.95, 1.5)
SUSPECT = "†"


def _overhead(key):
    return lambda r: r["overhead"] and r["overhead"].get(key)


def _classifier(key):
    return lambda r: subfield(r, "classifier", key)


COST_COLUMNS = [
    Column("time_ms", "time / image (ms)", ms_per_image, False, "{:.2f}"),
    # classifier guidance: gradients of the classifier are not in NFE; their time is in the above
    Column("classifier_grads", "classifier gradients / image", _classifier("evaluations_per_sample"),
           None, "{:g}"),
    Column("classifier_ms", "of which classifier (ms)", _classifier("ms_per_image"), None, "{:.2f}"),
    Column("throughput", "images / s", lambda r: r["throughput_images_per_s"], True, "{:.1f}"),
    Column("memory_mib", "peak memory (MiB)", peak_mib, False, "{:.0f}"),
    Column("parameters", "parameters", lambda r: r["num_parameters"], None, "{:,}"),
    Column("overhead", "sampler overhead", _overhead("ratio"), None, "{:.3f}", plausible=OVERHEAD_PLAUSIBLE),
    Column("overhead_in_situ", "overhead in situ", _overhead("ratio_in_situ"), None, "{:.3f}",
           plausible=OVERHEAD_PLAUSIBLE),
]
NFE_COLUMN = Column("nfe", "NFE", lambda r: r["nfe"], None, "{:g}")


def present_metrics(rows: list[Row]) -> dict[str, bool]:
    """Every metric some row has, known ones first, with the direction it declares."""
    present: dict[str, bool] = {}
    for row in rows:
        for name in row["metrics"]:
            present.setdefault(name, higher_is_better(row, name))
    known = [n for n in METRIC_HEADERS if n in present]
    return {n: present[n] for n in known + sorted(set(present) - set(known))}


def metric_column(name: str, higher_is_better: bool) -> Column:
    header, fmt = METRIC_HEADERS.get(name, (name, "{:.4g}"))
    return Column(name, header, lambda r: metric_value(r, name), higher_is_better, fmt, metric=name)


def columns_for(rows: list[Row], ranks: bool = True) -> list[Column]:
    """NFE, each metric present (followed by its rank column), then cost."""
    columns = [NFE_COLUMN]
    for name, higher in present_metrics(rows).items():
        column = metric_column(name, higher)
        columns.append(column)
        if ranks:
            columns.append(Column(f"rank_{name}", f"rank ({column.header})", lambda r: None,
                                  None, "{}", rank_of=name))
    empty = {c.key for c in COST_COLUMNS if all(c.get(r) is None for r in rows)}
    return columns + [c for c in COST_COLUMNS if c.key not in empty]


def ok(row: Row) -> bool:
    return row["status"] == "ok"


def competition_ranks(values: list[float | None], higher_is_better: bool) -> list[int | None]:
    """1, 2, 2, 4: equal values share a rank; missing values get none."""
    sign = -1 if higher_is_better else 1
    present = [sign * v for v in values if v is not None]
    return [None if v is None else 1 + sum(p < sign * v for p in present) for v in values]


def places(values: list[float | None], higher_is_better: bool | None) -> list[int | None]:
    """1 for the best value, 2 for the second-best distinct value, None otherwise."""
    if higher_is_better is None:
        return [None] * len(values)
    distinct = sorted({v for v in values if v is not None}, reverse=higher_is_better)
    podium = {v: i + 1 for i, v in enumerate(distinct[:2])}
    return [podium.get(v) if v is not None else None for v in values]


def _cell(row: Row, column: Column, value, place) -> Cell:
    if value is None:
        stored = row["metrics"].get(column.metric) if column.metric and ok(row) else None
        return Cell((stored and stored["flag"]) or "n/a", None)
    spread, error = None, None
    if column.metric:
        error = metric_error(row, column.metric)
        spread = None if error is None else column.fmt.format(error)
    suspect = bool(column.plausible) and not column.plausible[0] <= value <= column.plausible[1]
    text = column.fmt.format(value)
    if column.metric and error:
        text, spread = to_uncertainty(value, error)
    return Cell(text + (SUSPECT if suspect else ""), float(value), spread, place, suspect)


def pivot_cell(value: float, error: float | None, place, rank: int | None = None) -> Cell:
    text, spread = to_uncertainty(value, error) if error else (f"{value:.2f}", None)
    return Cell(text, value, spread, place, rank=rank)


def to_uncertainty(value: float, error: float) -> tuple[str, str]:
    """A value and its standard error, both to the error's two significant digits (133.7 +- 15.7
    reads "134", "16"; 1194.2 +- 153 reads "1190", "150"): digits beyond the error are noise."""
    if not math.isfinite(error) or error <= 0:
        return f"{value:.4g}", f"{error:g}"
    decimals = 1 - math.floor(math.log10(error))
    if decimals > 0:
        return f"{value:.{decimals}f}", f"{error:.{decimals}f}"
    return f"{round(value, decimals):.0f}", f"{round(error, decimals):.0f}"


def network_key(row: Row) -> str:
    """Rows with the same key sample from the same network ("" for none)."""
    return "scored" if is_scored(row) else subfield(row, "model", "checkpoint_sha256", default="")


def model_text(row: Row) -> str:
    """The network a row sampled from: recipe (or external source), size, checkpoint prefix."""
    if is_scored(row):
        return "samples made elsewhere"
    model = row["model"]
    if not model:
        return "none"
    size = f"{row['num_parameters'] / 1e6:.2g} M, " if row["num_parameters"] else ""
    step = f", step {row['training']['step']}" if row.get("training") else ""   # a training curve's snapshot
    text = f"{model['recipe']} ({size}{model['checkpoint_sha256'][:8]}{step})"
    stages = row["cascade"] and row["cascade"].get("stages")
    if not stages:
        return text
    second = stages[1]["model"]     # a cascade: the low-resolution model, then the super-resolution one
    return f"{model['recipe']} low-res ({size}{model['checkpoint_sha256'][:8]}) -> " + (
        f"{second['recipe']} ({second['checkpoint_sha256'][:8]})" if second else stages[1]["method"])


def hparams_text(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row["hparams"].items())) or "-"


def steps_text(row: Row) -> str:
    return "-" if is_scored(row) else str(row["steps"])


def method_text(row: Row) -> str:
    """The method alone (its model and hyper-parameters have their own columns); a scored row's
    label, which is all that names it."""
    return row["label"] if is_scored(row) else row["method"]


# The text columns every table starts with, in every format: (header, text of a row).
ROW_TEXT = (("method", method_text), ("model", model_text),
            ("hyper-parameters", hparams_text))


def line_name(row: Row) -> str:
    """One line of a plot or of the pivot: the cell's label, the method with the
    hyper-parameters the suite set (a cell that sets none runs the method's defaults, which the
    table's hyper-parameters column spells out)."""
    return row["label"] or row["method"]


def row_order(row: Row) -> tuple:
    """By method, then hyper-parameter values (numerically where numbers), then steps."""
    hparams = tuple((k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))
                    for k, v in sorted(row["hparams"].items()))
    return (row["method"], hparams, row["steps"])


def within(parts: list, values: list, rank) -> list:
    """`rank` applied to each part's values separately, the results back in row order."""
    out = [None] * len(values)
    for part in dict.fromkeys(parts):
        members = [i for i, p in enumerate(parts) if p == part]
        for i, result in zip(members, rank([values[i] for i in members])):
            out[i] = result
    return out


def build_board(group: Group, ranks: bool = True, across_models: bool = False, pairs=None) -> Board:
    """The group's table, ranked per model; with several models, `.cross` is the same rows
    ranked across models. With `pairs` (`bench.report.pairs.Pairs`), FID's rank is statistical:
    1 + the rows of the same part significantly better, so rows tied with the best share 1."""
    if across_models:
        rows = sorted(group.rows, key=row_order)
        parts = [0] * len(rows)
    else:
        rows = sorted(group.rows, key=lambda r: (model_text(r), network_key(r), row_order(r)))
        parts = [network_key(r) for r in rows]
    columns = columns_for(rows, ranks)
    by_column: list[list[Cell]] = []
    for column in columns:
        if column.rank_of:
            source = next(c for c in columns if c.key == column.rank_of)
            values = [source.get(r) if ok(r) else None for r in rows]
            ranked = within(parts, values, lambda v: competition_ranks(v, source.higher_is_better))
            if column.rank_of == "fid" and pairs is not None:
                keys = [r["cell_key"] if ok(r) and pairs.covers(r["cell_key"]) else None for r in rows]
                statistical = within(parts, keys, pairs.ranks)
                ranked = [s if s is not None else k for s, k in zip(statistical, ranked)]
            by_column.append([Cell(str(k), float(k)) if k else Cell("-", None) for k in ranked])
            continue
        values = [column.get(r) if ok(r) else None for r in rows]
        podium = within(parts, values, lambda v: places(v, column.higher_is_better))
        by_column.append([_cell(r, column, v, p) for r, v, p in zip(rows, values, podium)])
    if pairs is not None:
        columns = [dataclasses.replace(c, header="rank (FID, paired)") if c.rank_of == "fid" else c
                   for c in columns]
    board = Board(group, columns, rows, [list(cells) for cells in zip(*by_column)] if rows else [],
                  across_models, pairs=pairs)
    if not across_models and len(set(parts)) > 1:
        board.cross = build_board(group, ranks, True, pairs)
    return board


def status_text(row: Row) -> str:
    return "ok" if ok(row) else f"{row['status']}: {row['message']}"


def group_rows(rows: list[Row]) -> list[Group]:
    """Generation before super-resolution; within a task, fingerprints in order of first row."""
    groups: dict[tuple, Group] = {}
    for row in rows:
        key = (row["task"], str(row["protocol_fingerprint"]))
        groups.setdefault(key, Group(key[0], key[1], [])).rows.append(row)
    task_order = list(TASK_TITLES)
    return sorted(groups.values(), key=lambda g: task_order.index(g.task) if g.task in task_order
                  else len(task_order))


def pivot(group: Group, metric: str = "fid", pairs=None) -> tuple[list[tuple[str, str]], list[int], list[list[Cell | None]]]:
    """`metric` at each NFE, one line per method, hyper-parameters and model (the EDM and DDIM
    papers' table): (line name, model) pairs, NFE columns, and a grid of cells (None where a
    line has no such NFE); in each NFE column the best of each model is place 1, second 2, and
    with `pairs` (FID) each cell carries its paired rank within the column and model."""
    values: dict[tuple[tuple[str, str], int], float] = {}
    errors: dict[tuple[tuple[str, str], int], float | None] = {}
    keys: dict[tuple[tuple[str, str], int], str] = {}
    identity: dict[tuple[str, str], str] = {}
    for row in sorted(group.rows, key=lambda r: (model_text(r), network_key(r), row_order(r))):
        value = metric_value(row, metric) if ok(row) else None
        if value is not None and row["nfe"] is not None:
            name, nfe = (line_name(row), model_text(row)), int(row["nfe"])
            values[(name, nfe)], errors[(name, nfe)] = value, metric_error(row, metric)
            keys[(name, nfe)] = row["cell_key"]
            identity[name] = network_key(row)
    names = list(dict.fromkeys(k[0] for k in values))
    nfes = sorted({k[1] for k in values})
    higher = higher_is_better(group.rows[0], metric)
    columns = []
    for nfe in nfes:
        column = [values.get((name, nfe)) for name in names]
        parts = [identity[n] for n in names]
        podium = within(parts, column, lambda v: places(v, higher))
        ranks = [None] * len(names)
        if pairs is not None and metric == "fid":
            covered = [keys.get((n, nfe)) if pairs.covers(keys.get((n, nfe), "")) else None for n in names]
            ranks = within(parts, covered, pairs.ranks)
        columns.append([None if v is None else pivot_cell(v, errors[(name, nfe)], place, rank)
                        for name, v, place, rank in zip(names, column, podium, ranks)])
    return names, nfes, [list(line) for line in zip(*columns)]


def time_pivot(group: Group) -> tuple[list[tuple[str, str]], list[int], list[list[Cell | None]]]:
    """Time per image (ms) at each NFE, beside the FID pivot: the cell's text adds the sampler
    overhead in situ (x: sampling time over the time inside the denoiser's own calls) where
    measured, which says what a solver's arithmetic costs whatever the machine's speed."""
    cells: dict[tuple[tuple[str, str], int], Cell] = {}
    for row in sorted(group.rows, key=lambda r: (model_text(r), network_key(r), row_order(r))):
        ms = ms_per_image(row) if ok(row) else None
        if ms is not None and row["nfe"]:
            in_situ = subfield(row, "overhead", "ratio_in_situ")
            text = f"{ms:.3g}" + (f" (×{in_situ:.3f})" if in_situ else "")
            cells[((line_name(row), model_text(row)), int(row["nfe"]))] = Cell(text, ms)
    names = list(dict.fromkeys(k[0] for k in cells))
    nfes = sorted({k[1] for k in cells})
    return names, nfes, [[cells.get((name, nfe)) for nfe in nfes] for name in names]
