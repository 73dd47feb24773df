"""Figures from stored rows, each written as PNG and PDF with no timestamp in either (a report
re-rendered from the same rows is byte-identical).

FID vs NFE and FID vs time per image (Pareto front marked) for generation; PSNR and SSIM vs FID
for the tasks with inputs, a swept hyper-parameter (headstart's `sigma_start`, SDEdit's `strength`)
tracing the trade-off;
the profiler's breakdown as stacked bars; the sample grids side by side.
"""
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False   # a '$' in a method name is a dollar sign
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from PIL import Image  # noqa: E402

from bench.report.board import line_name, model_text, ms_per_image, ok, row_order  # noqa: E402
from bench.rows import metric_error, metric_value  # noqa: E402

MARKERS = "osD^v<>"
SWEPT = ("sigma_start", "cfg_scale", "strength")   # hyper-parameters a suite sweeps to trace a trade-off
PDF_METADATA = {"CreationDate": None, "Producer": None}


def save(fig, stem: Path) -> list[str]:
    """`stem`.png and `stem`.pdf; returns the two file names."""
    fig.savefig(stem.with_suffix(".png"))
    fig.savefig(stem.with_suffix(".pdf"), metadata=PDF_METADATA)
    plt.close(fig)
    return [stem.with_suffix(".png").name, stem.with_suffix(".pdf").name]


# Twenty colours (tab10's, then tab20's lighter partners) with seven markers: colour and
# marker change together, so no two of up to 140 series look alike.
PALETTE = [f"C{i}" for i in range(10)] + [matplotlib.colormaps["tab20"](2 * i + 1) for i in range(10)]
LEGEND_CHARACTERS = 40           # a legend entry wraps here, so the legend stays narrower than the axes


def line_style(number: int) -> dict:
    return {"color": PALETTE[number % len(PALETTE)], "marker": MARKERS[number % len(MARKERS)],
            "linestyle": ("-", "--", ":")[number // len(PALETTE) % 3]}


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, [textwrap.fill(label, LEGEND_CHARACTERS) for label in labels],
                  fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _legend_below(fig, ax, columns: int = 2) -> None:
    """The legend at the foot of the figure in `columns` columns (for more series than fit
    beside the axes); the figure grows by the legend's measured height."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        fig.tight_layout()
        return
    wrapped = [textwrap.fill(label, LEGEND_CHARACTERS * 13 // 10) for label in labels]
    legend = fig.legend(handles, wrapped, fontsize=7, ncol=columns, loc="lower center",
                        bbox_to_anchor=(0.5, 0.0), borderaxespad=0.5)
    fig.canvas.draw()
    legend_inches = legend.get_window_extent().height / fig.dpi + 0.1
    axes_inches = fig.get_figheight()
    fig.set_figheight(axes_inches + legend_inches)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))


def _finish(fig, ax, series: bool, x_values, xlabel: str, ylabel: str, legend: bool = True) -> None:
    _x_axis(ax, x_values, xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if series and legend:
        _legend(ax)
    elif not series:
        ax.text(0.5, 0.5, "no successful rows with these metrics", ha="center", va="center",
                transform=ax.transAxes)


def plain_log_ticks(axis) -> None:
    """A log axis ticked at 1, 2 and 5 per decade in plain numbers (the default labels are
    mathtext, which reports draw as text: a '$' in a name is a dollar sign)."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _x_axis(ax, values, label: str) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= 10:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        label += " (log scale)"
    ax.set_xlabel(label)


def fid_points(row) -> tuple[float | None, float]:
    """A row's FID and its stored standard error (0 when none is stored)."""
    return metric_value(row, "fid"), metric_error(row, "fid") or 0.0


def fid_vs_nfe(rows: list[dict], stem: Path) -> list[str]:
    """One panel per model (a sampler's FID belongs to it and its network), FID +- its standard
    error against NFE, one line per method and hyper-parameters."""
    panels: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for row in sorted(rows, key=lambda r: (model_text(r), row_order(r))):
        fid, error = fid_points(row)
        if ok(row) and fid is not None and row.get("nfe"):   # NFE 0 has no log position
            panels.setdefault(model_text(row), {}).setdefault(line_name(row), []).append(
                (row["nfe"], fid, error))
    fig, axes = plt.subplots(max(1, len(panels)), 1, figsize=(9, 0.6 + 3.2 * max(1, len(panels))),
                             dpi=120, squeeze=False)
    for ax, (model, series) in zip(axes[:, 0], panels.items() or [("", {})]):
        for number, (name, points) in enumerate(series.items()):
            points.sort()
            x, y, error = zip(*points)
            ax.errorbar(x, y, yerr=error, label=name, capsize=2, markersize=4, **line_style(number))
        _finish(fig, ax, bool(series), [p[0] for s in series.values() for p in s], "NFE", "FID ↓")
        ax.set_title(f"model {model}" if model else "", fontsize=9)
    if not panels:
        _finish(fig, axes[0, 0], False, [], "NFE", "FID ↓")
    fig.suptitle("FID against the number of denoiser evaluations, per model (bars: standard error)",
                 fontsize=10, x=0.02, ha="left")
    title_room = 0.45 / fig.get_figheight()     # the suptitle's line, kept clear of the top panel
    fig.tight_layout(rect=(0, 0, 1, 1 - title_room))   # legends count in the layout
    return save(fig, stem)


MIN_NFE_POINTS = 3   # a line in the paired figure: measured at this many NFEs or more


def paired_bands(columns) -> dict[str, list[tuple[float, float, float, float, bool]]]:
    """Per line (method and hyper-parameters): (NFE, FID, band low, band high, tied) where the
    band is the best row's FID at that NFE plus the paired 95 % interval of this row's FID minus
    the best's (zero-width for the best itself), so a band reaching the best's FID is a tie."""
    lines: dict[str, list[tuple[float, float, float, float, bool]]] = {}
    for column in columns:
        best = column.best
        best_fid = metric_value(best, "fid")
        for row, rank in zip(column.rows, column.ranks):
            fid = metric_value(row, "fid")
            if row is best:
                low = high = fid
            else:
                found = column.pairs.differences[(row["cell_key"], best["cell_key"])]
                low, high = best_fid + found.low, best_fid + found.high
            lines.setdefault(line_name(row), []).append((column.nfe, fid, low, high, rank == 1))
    return {name: sorted(points) for name, points in lines.items() if len(points) >= MIN_NFE_POINTS}


def fid_vs_nfe_paired(columns, stem: Path) -> list[str]:
    """The low-NFE headline: FID against NFE, one line per solver, its band the paired interval
    against that NFE's best, filled markers where the row is statistically tied with the best."""
    lines = paired_bands(columns)
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=120)
    for number, (name, points) in enumerate(lines.items()):
        nfe, fid, low, high, tied = zip(*points)
        style = line_style(number)
        ax.plot(nfe, fid, label=name, color=style["color"], linestyle=style["linestyle"], linewidth=1.2)
        ax.fill_between(nfe, low, high, color=style["color"], alpha=0.12, linewidth=0)
        for x, y, is_tied in zip(nfe, fid, tied):
            ax.plot([x], [y], marker=style["marker"], markersize=5, color=style["color"],
                    markerfacecolor=style["color"] if is_tied else "white")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    _finish(fig, ax, bool(lines), [p[0] for points in lines.values() for p in points], "NFE", "FID ↓ (log scale)",
            legend=False)
    ax.set_title("FID against NFE. Band: the paired 95 % interval against the best at that NFE;\n"
                 "filled marker: statistically tied with the best (paired permutation test)",
                 fontsize=8.5, loc="left")
    _legend_below(fig, ax, columns=2)
    return save(fig, stem)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (lower is better on both), by x."""
    front, best_y = [], float("inf")
    for x, y in sorted(points):
        if y < best_y:
            front.append((x, y))
            best_y = y
    return front


def fid_vs_time(rows: list[dict], stem: Path) -> list[str]:
    """Every row on one set of axes (a Pareto front is across models), named with its model
    when the rows use several."""
    several = len({model_text(r) for r in rows}) > 1
    series: dict[str, list[tuple[float, float, float]]] = {}
    for row in sorted(rows, key=lambda r: (model_text(r), row_order(r))):
        (fid, error), ms = fid_points(row), ms_per_image(row)
        if ok(row) and fid is not None and ms:
            name = f"{line_name(row)} [{model_text(row)}]" if several else line_name(row)
            series.setdefault(name, []).append((ms, fid, error))
    fig, ax = plt.subplots(figsize=(9, 4.0), dpi=120)
    for number, (name, points) in enumerate(series.items()):
        style = line_style(number)
        x, y, error = zip(*points)
        ax.errorbar(x, y, yerr=error, label=name, color=style["color"], marker=style["marker"],
                    linestyle="none", capsize=2, markersize=4)
    front = pareto_front([p[:2] for s in series.values() for p in s])
    if front:
        ax.step(*zip(*front), where="post", color="black", linewidth=1, alpha=0.6,
                label="Pareto front")
        ax.scatter(*zip(*front), facecolors="none", edgecolors="black", s=80, linewidths=1)
    _finish(fig, ax, bool(series), [p[0] for s in series.values() for p in s],
            "time per image (ms)", "FID ↓", legend=False)
    ax.set_title("FID against wall-clock, across models (circled: on the Pareto front)", fontsize=9)
    _legend_below(fig, ax)
    return save(fig, stem)


def training_curves(series: dict, stem: Path) -> list[str]:
    """FID with its 95 % band at each training snapshot, against training seconds (top) and
    steps (bottom), one line per model and sampler (`bench.report.curves.training_series`)."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 7.0), dpi=120)
    for ax, (field, label) in zip(axes, (("seconds", "training wall-clock (s)"), ("step", "training steps"))):
        for number, (name, points) in enumerate(series.items()):
            style = line_style(number)
            x = [getattr(p, field) for p in points]
            ax.plot(x, [p.fid for p in points], label=name, markersize=4, **style)
            ax.fill_between(x, [p.low for p in points], [p.high for p in points],
                            color=style["color"], alpha=0.15, linewidth=0)
        _finish(fig, ax, bool(series), [getattr(p, field) for s in series.values() for p in s],
                label, "FID ↓", legend=False)
        if series:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
    axes[0].set_title("FID along training (EMA snapshots; bands: 95 % interval from the seed blocks)",
                      fontsize=9)
    _legend_below(fig, axes[1])
    return save(fig, stem)


def fidelity_tradeoff(rows: list[dict], stem: Path) -> list[str]:
    """PSNR and SSIM against FID; a swept method is one line per step count, its points labelled
    with the swept value; other methods one line, points labelled with steps."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    varying = varying_hparams(rows)
    for ax, metric, ylabel in zip(axes, ("psnr", "ssim"), ("PSNR (dB) ↑", "SSIM ↑")):
        series: dict[str, list[tuple[float, float, str]]] = {}
        for row in rows:
            fid, value = metric_value(row, "fid"), metric_value(row, metric)
            if not ok(row) or fid is None or value is None:
                continue
            swept = [row["hparams"][k] for k in SWEPT if k in row["hparams"]]
            setting = "".join(f"{k}={row['hparams'][k]}, " for k in varying.get(row["method"], ()))
            name = (f"{row['method']} ({setting}{row['steps']} step{'s' if row['steps'] != 1 else ''})"
                    if swept else str(row["method"]))
            label = f"{swept[0]:g}" if swept else (f"{row['steps']}" if (row["nfe"] or 0) > 1 else "")
            order = swept[0] if swept else row["steps"]
            series.setdefault(name, []).append((order, fid, value, label))
        for number, (name, points) in enumerate(sorted(series.items())):
            points.sort()   # along the sweep (or the step count), so the line traces the trade-off
            ax.plot([p[1] for p in points], [p[2] for p in points], label=name, **line_style(number))
            for _, fid, value, label in points[:1] + points[1:][-1:]:   # the ends: no overlaps
                ax.annotate(label, (fid, value), fontsize=6, xytext=(3, 3), textcoords="offset points")
        _finish(fig, ax, bool(series), [p[1] for s in series.values() for p in s], "FID ↓", ylabel,
                legend=metric == "ssim")
    axes[0].set_title("fidelity against realism (ends labelled: the swept value or steps)", fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def varying_hparams(rows: list[dict]) -> dict[str, list[str]]:
    """Per method, the hyper-parameters other than the swept ones whose values differ between
    its rows: what tells its lines apart besides the step count."""
    values: dict[str, dict[str, set]] = {}
    for row in rows:
        for key, value in row["hparams"].items():
            if key not in SWEPT:
                values.setdefault(row["method"], {}).setdefault(key, set()).add(repr(value))
    return {method: sorted(k for k, seen in keys.items() if len(seen) > 1) for method, keys in values.items()}


PROFILE_PARTS = (("denoiser_s", "inside the denoiser"), ("sampler_arithmetic_s", "sampler arithmetic"),
                 ("other_s", "other (Python, bookkeeping)"))


def profile_bars(rows: list[dict], stem: Path) -> list[str]:
    profiled = [r for r in sorted(rows, key=row_order) if ok(r) and r.get("profile")]
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.35 * max(1, len(profiled))), dpi=120)
    names = [f"{line_name(r)}, {r['steps']} step{'s' if r['steps'] != 1 else ''}" for r in profiled]
    left = [0.0] * len(profiled)
    for number, (key, label) in enumerate(PROFILE_PARTS):
        widths = [max(0.0, r["profile"].get(key) or 0.0) * 1e3 / (r.get("batch_size") or 1)
                  for r in profiled]
        ax.barh(names, widths, left=left, color=f"C{number}", label=label)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("ms per image in the profiled batch")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    if profiled:
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "no profiled rows (suite key `profile = true`)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_title("Where sampling time goes (torch.profiler)")
    fig.tight_layout()
    return save(fig, stem)


def sample_panels(grids: list[tuple[str, Path]], stem: Path, per_row: int = 6) -> list[str]:
    """The cells' sample grids (the same seeds in every cell) side by side, titled by cell."""
    lines = max(1, -(-len(grids) // per_row))
    fig, axes = plt.subplots(lines, per_row, figsize=(2.0 * per_row, 2.25 * lines), dpi=120,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, grids):
        with Image.open(path) as image:
            ax.imshow(image.convert("RGB"))
        ax.set_title(textwrap.fill(title, 34), fontsize=6)
    fig.tight_layout()
    return save(fig, stem)
