"""The leaderboard as data, before any format: which rows are ranked together, which columns
exist, each cell's value, uncertainty and place (best / second). Markdown, LaTeX and HTML only
decide how a cell looks.

Rows are ranked together only when task and metric protocol fingerprint agree; a group is one
table. Failed rows are listed in their group but take no place and no rank.
"""
from dataclasses import dataclass
from typing import Callable

from bench.rows import Row, higher_is_better, metric_error, metric_value

TASK_TITLES = {"generate": "Generation", "superres": "Super-resolution"}
METRIC_HEADERS = {"fid": ("FID", "{:.3f}"), "fid_infinity": ("FID∞", "{:.3f}"),
                  "kid": ("KID", "{:.4g}"), "precision": ("precision", "{:.3f}"),
                  "recall": ("recall", "{:.3f}"), "isc": ("IS", "{:.3f}"),
                  "class_acc": ("class acc", "{:.3f}"), "psnr": ("PSNR", "{:.2f}"),
                  "ssim": ("SSIM", "{:.4f}"), "lr_mse": ("LR MSE", "{:.3g}")}


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    get: Callable[[Row], float | None]
    higher_is_better: bool | None      # None: not ranked, no best / second
    fmt: str
    metric: str | None = None          # the key in row["metrics"], for uncertainty and flags
    rank_of: str | None = None         # a rank column: the key of the metric it ranks


@dataclass(frozen=True)
class Cell:
    text: str                 # the formatted value, a flag ("inf") or "n/a"; plain text
    value: float | None       # what sorting uses
    spread: str | None = None  # the formatted uncertainty, when stored
    place: int | None = None  # 1 best, 2 second


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

    @property
    def title(self) -> str:
        return f"{TASK_TITLES.get(self.group.task, self.group.task)}, protocol {self.group.fingerprint}"


def ms_per_image(row: Row) -> float | None:
    timing = row["time_per_image_s"]
    return None if not timing or timing["median"] is None else timing["median"] * 1e3


def peak_mib(row: Row) -> float | None:
    memory = row["memory"]
    return None if not memory or memory.get("peak_bytes") is None else memory["peak_bytes"] / 2**20


def _overhead(key):
    return lambda r: r["overhead"] and r["overhead"].get(key)


COST_COLUMNS = [
    Column("time_ms", "time / image (ms)", ms_per_image, False, "{:.2f}"),
    Column("throughput", "images / s", lambda r: r["throughput_images_per_s"], True, "{:.1f}"),
    Column("memory_mib", "peak memory (MiB)", peak_mib, False, "{:.0f}"),
    Column("parameters", "parameters", lambda r: r["num_parameters"], None, "{:,}"),
    Column("overhead", "sampler overhead", _overhead("ratio"), False, "{:.3f}"),
    Column("overhead_in_situ", "overhead in situ", _overhead("ratio_in_situ"), False, "{:.3f}"),
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
    spread = None
    if column.metric:
        error = metric_error(row, column.metric)
        spread = None if error is None else column.fmt.format(error)
    return Cell(column.fmt.format(value), float(value), spread, place)


def hparams_text(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row["hparams"].items())) or "-"


def line_name(row: Row) -> str:
    """A method with its hyper-parameters: one line of a plot or of the pivot. A label already
    names the hyper-parameters a suite swept, so it stands alone."""
    label = row["label"] or row["method"]
    return f"{label} ({hparams_text(row)})" if row["hparams"] and label == row["method"] else label


def row_order(row: Row) -> tuple:
    """By method, then hyper-parameter values (numerically where numbers), then steps."""
    hparams = tuple((k, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))
                    for k, v in sorted(row["hparams"].items()))
    return (row["method"], hparams, row["steps"])


def build_board(group: Group, ranks: bool = True) -> Board:
    rows = sorted(group.rows, key=row_order)
    columns = columns_for(rows, ranks)
    by_column: list[list[Cell]] = []
    for column in columns:
        if column.rank_of:
            source = next(c for c in columns if c.key == column.rank_of)
            values = [source.get(r) if ok(r) else None for r in rows]
            by_column.append([Cell(str(k), float(k)) if k else Cell("-", None)
                              for k in competition_ranks(values, source.higher_is_better)])
            continue
        values = [column.get(r) if ok(r) else None for r in rows]
        podium = places(values, column.higher_is_better)
        by_column.append([_cell(r, column, v, p) for r, v, p in zip(rows, values, podium)])
    return Board(group, columns, rows, [list(cells) for cells in zip(*by_column)] if rows else [])


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


def pivot(group: Group, metric: str = "fid") -> tuple[list[str], list[int], list[list[Cell | None]]]:
    """`metric` at each NFE, one line per method and hyper-parameters (the EDM and DDIM papers'
    table): line names, NFE columns, and a grid of cells (None where a method has no such NFE);
    best per NFE column is place 1, second place 2."""
    values: dict[tuple[str, int], float] = {}
    for row in sorted(group.rows, key=row_order):
        value = metric_value(row, metric) if ok(row) else None
        if value is not None and row["nfe"] is not None:
            values[(line_name(row), int(row["nfe"]))] = value
    names = list(dict.fromkeys(k[0] for k in values))
    nfes = sorted({k[1] for k in values})
    higher = higher_is_better(group.rows[0], metric)
    columns = []
    for nfe in nfes:
        column = [values.get((name, nfe)) for name in names]
        columns.append([None if v is None else Cell(f"{v:.2f}", v, None, place)
                        for v, place in zip(column, places(column, higher))])
    return names, nfes, [list(line) for line in zip(*columns)]
