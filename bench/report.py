"""Reports from stored rows alone: a Markdown leaderboard, a FID-vs-NFE plot for generation and
a PSNR-vs-FID plot (the fidelity / realism trade-off) for super-resolution.

Rows whose metric protocol fingerprints differ are never ranked together: each fingerprint
gets its own table.
"""
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from bench.registry import validate_name  # noqa: E402
from bench.store import ResultStore, latest_per_cell  # noqa: E402

METRIC_HEADERS = {"fid": ("FID", "{:.3f}"), "class_acc": ("class acc", "{:.3f}")}
COST_COLUMNS = [  # (header, getter, higher_is_better or None when not ranked, format, metric)
    ("time / image (ms)", lambda r: _ms(r), False, "{:.2f}", None),
    ("images / s", lambda r: r.get("throughput_images_per_s"), True, "{:.1f}", None),
    ("peak memory (MiB)", lambda r: _mib(r), False, "{:.0f}", None),
    ("sampler overhead", lambda r: (r.get("overhead") or {}).get("ratio"), False, "{:.3f}", None),
    ("overhead in situ", lambda r: (r.get("overhead") or {}).get("ratio_in_situ"), False, "{:.3f}", None),
]


def columns_for(rows: list[dict]) -> list[tuple]:
    """NFE, then every metric some row has (with the direction it declares), then cost."""
    present = {}
    for row in rows:
        for name, value in (row.get("metrics") or {}).items():
            present.setdefault(name, value.get("higher_is_better", False))
    ordered = [n for n in METRIC_HEADERS if n in present] + sorted(set(present) - set(METRIC_HEADERS))
    metric_columns = [(METRIC_HEADERS.get(n, (n, ""))[0], lambda r, n=n: _metric(r, n), present[n],
                       METRIC_HEADERS.get(n, (n, "{:.4g}"))[1], n) for n in ordered]
    return [("NFE", lambda r: r["nfe"], None, "{:g}", None)] + metric_columns + COST_COLUMNS


def _metric(row, name):
    return (row.get("metrics") or {}).get(name, {}).get("value")


def _ms(row):
    timing = row.get("time_per_image_s")
    return None if not timing else timing["median"] * 1e3


def _mib(row):
    memory = row.get("memory")
    return None if not memory or memory.get("peak_bytes") is None else memory["peak_bytes"] / 2**20


def _order(row) -> tuple:
    """Rows by method, then hyper-parameter values (numerically), then steps."""
    return (row["method"], tuple((k, str(v)) if isinstance(v, str) else (k, v)
                                 for k, v in sorted(row["hparams"].items())), row["steps"])


def _hparams(row) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row["hparams"].items())) or "-"


def _cell(value, fmt, best, stored=None) -> str:
    """A value (bold when best) with its uncertainty; a non-finite stored value shows its flag."""
    stored = stored or {}
    if value is None:
        return stored.get("flag") or "n/a"
    text = fmt.format(value)
    text = f"**{text}**" if best else text
    spread = (stored.get("uncertainty") or {}).get("value")
    return text if spread is None else f"{text} ± {fmt.format(spread)}"


def _header(name, higher_is_better) -> str:
    return name if higher_is_better is None else f"{name} {'↑' if higher_is_better else '↓'}"


def leaderboard_table(rows: list[dict]) -> list[str]:
    columns = columns_for(rows)
    headers = ["method", "hyper-parameters", "steps"] + [_header(h, d) for h, _, d, _, _ in columns]
    headers.append("status")
    best = {}
    for header, get, direction, _, _ in columns:
        values = [get(r) for r in rows if r["status"] == "ok" and get(r) is not None]
        if direction is not None and values:
            best[header] = max(values) if direction else min(values)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    ordered = sorted(rows, key=_order)
    for row in ordered:
        cells = [row["method"], _hparams(row), str(row["steps"])]
        for header, get, direction, fmt, name in columns:
            value = get(row) if row["status"] == "ok" else None
            stored = (row.get("metrics") or {}).get(name) if name and row["status"] == "ok" else None
            cells.append(_cell(value, fmt, value is not None and best.get(header) == value, stored))
        cells.append(row["status"] if row["status"] == "ok" else f"{row['status']}: {row['message']}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _protocol_caption(row) -> str:
    p = row["protocol"]
    ref = p["reference"]
    caption = (f"FID with extractor `{p['extractor']}` (weights {p['extractor_weights_sha256'][:12]}, "
               f"layer {p['feature_layer']}), {p['n_samples']} samples against {ref['count']} "
               f"`{ref['dataset']}` {ref['split']} images; protocol {row['protocol_fingerprint']}.")
    if not p["extractor"].startswith("inception"):
        caption += " A domain-feature FID: not comparable with Inception FID."
    caption += _uncertainty_caption(p.get("metrics") or {})
    sr = p.get("superres")
    if sr:
        fidelity = sr["fidelity"]
        caption += (f" Super-resolution x{sr['scale']} ({sr['degradation']}) of the {sr['inputs']}; "
                    f"PSNR / SSIM on {fidelity['colour']}, {fidelity['border_crop']}-pixel border "
                    f"crop, data range {fidelity['data_range']}; lr_mse: {fidelity['lr_mse']}.")
    return caption


def _uncertainty_caption(settings: dict) -> str:
    parts = []
    if "fid" in settings:
        parts.append(f"FID: standard error from {settings['fid']['blocks']} disjoint seed blocks "
                     "(block std / sqrt(blocks))")
    if "kid" in settings:
        parts.append(f"KID: std over {settings['kid']['subsets']} subsets of "
                     f"{settings['kid']['subset_size']}")
    if "isc" in settings:
        parts.append(f"IS: std over {settings['isc']['splits']} splits")
    parts.append("per-image metrics: standard error over images")
    return (" ± is, for " + "; ".join(parts) + ". Sampler overhead: sampling time of a batch / "
            "(NFE x the bare denoiser's forward time on that batch); in situ: over the time spent inside "
            "its own denoiser calls (CPU).")


def render_report(suite: str, results_root: Path, reports_root: Path) -> Path:
    """Write reports/<suite>/leaderboard.md, fid_vs_nfe.png and sample grids; returns the dir."""
    store = ResultStore(results_root, validate_name(suite, "suite name"))
    rows, problems = store.read()
    rows = latest_per_cell(rows)
    out = Path(reports_root) / suite
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Leaderboard: {suite}", ""]
    if not rows:
        lines.append(f"No results stored yet: run `diffbench run {suite}`.")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["protocol_fingerprint"], []).append(row)
    figures: set[str] = set()
    for fingerprint, group in groups.items():
        lines += [_protocol_caption(group[0]), ""] + leaderboard_table(group) + [""]
        lines += _provenance_lines(group)
        lines += _figure_lines(group, fingerprint, out, figures)
    if rows:
        lines += _grid_lines(rows, store.directory, out)
    lines += [f"- {p}" for p in problems]
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n")
    return out


def _figure_lines(group, fingerprint, out: Path, taken: set[str]) -> list[str]:
    """The group's figure: FID vs NFE (generation) or PSNR vs FID (super-resolution); a second
    group of the same kind gets its fingerprint in the file name."""
    superres = group[0].get("task") == "superres"
    stem, title = ("psnr_vs_fid", "PSNR vs FID") if superres else ("fid_vs_nfe", "FID vs NFE")
    name = f"{stem}.png" if stem not in taken else f"{stem}-{fingerprint[:8]}.png"
    taken.add(stem)
    (plot_psnr_vs_fid if superres else plot_fid_vs_nfe)(group, out / name)
    return [f"![{title}]({name})", ""]


def _provenance_lines(group) -> list[str]:
    p = group[0]["provenance"]
    sha = (p.get("git_sha") or "unknown")[:12] + (" (dirty)" if p.get("git_dirty") else "")
    return [f"Measured on {p['device_name']} ({p['device']}, {p['num_threads']} threads), "
            f"torch {p['torch']}, torch-fidelity {p['torch_fidelity']}, git {sha}. "
            f"Time is the median over timed batches (warm-up excluded) divided by the batch size; "
            f"memory is `{(group[0].get('memory') or {}).get('kind')}` over "
            f"{(group[0].get('memory') or {}).get('region', 'sampling')}.", ""]


def _grid_lines(rows, results_dir: Path, out: Path) -> list[str]:
    lines = ["## Samples (the same seeds for every cell)", ""]
    (out / "samples").mkdir(exist_ok=True)
    for row in sorted(rows, key=_order):
        source = row.get("samples_grid") and results_dir / row["samples_grid"]
        if not source or not source.is_file():
            continue
        target = out / "samples" / source.name
        shutil.copyfile(source, target)
        lines += [f"**{row['label']}, {row['steps']} steps** (NFE {row['nfe']})", "",
                  f"![{row['label']} {row['steps']} steps](samples/{source.name})", ""]
    return lines


MARKERS = "osD^v<>"


def _line_style(number: int) -> dict:
    """Ten colours, then the next marker and dash, so that no two series look alike."""
    cycle = number // 10
    return {"color": f"C{number % 10}", "marker": MARKERS[cycle % len(MARKERS)],
            "linestyle": ("-", "--", ":")[cycle % 3]}


def _x_axis(ax, values, label: str) -> None:
    """A log axis with plain numbers when the values span a decade or more, else linear (a log
    axis over less than a decade has no labelled tick)."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        label += " (log scale)"
    ax.set_xlabel(label)


def plot_fid_vs_nfe(rows: list[dict], path: Path) -> None:
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        fid = _metric(row, "fid")
        if row["status"] == "ok" and fid is not None and row["nfe"]:   # NFE 0 has no log position
            name = row["label"]
            series.setdefault(name, []).append((row["nfe"], fid))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for number, (name, points) in enumerate(sorted(series.items())):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, **_line_style(number))
    _x_axis(ax, [p[0] for points in series.values() for p in points], "NFE")
    ax.set_ylabel("FID ↓")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no successful rows", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SWEPT = ("sigma_start", "cfg_scale")   # hyper-parameters a suite sweeps to trace a trade-off


def plot_psnr_vs_fid(rows: list[dict], path: Path) -> None:
    """Each SR cell a point (FID, PSNR). A swept method is one line per step count, its points
    labelled with the swept value; other methods are one line, points labelled with steps."""
    series: dict[str, list[tuple[float, float, str]]] = {}
    for row in rows:
        fid, psnr = _metric(row, "fid"), _metric(row, "psnr")
        if row["status"] != "ok" or fid is None or psnr is None:
            continue
        swept = [f"{row['hparams'][k]:g}" for k in SWEPT if k in row["hparams"]]
        name = f"{row['method']} ({row['steps']} steps)" if swept else row["method"]
        label = swept[0] if swept else (f"{row['steps']}" if row["nfe"] > 1 else "")
        series.setdefault(name, []).append((fid, psnr, label))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for number, (name, points) in enumerate(sorted(series.items())):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, **_line_style(number))
        for fid, psnr, label in points:
            ax.annotate(label, (fid, psnr), fontsize=6, xytext=(3, 3), textcoords="offset points")
    _x_axis(ax, [p[0] for points in series.values() for p in points], "FID ↓")
    ax.set_ylabel("PSNR (dB) ↑")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
