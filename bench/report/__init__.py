"""Reports from stored rows alone (never in-memory state), so any results file, including one
merged from several machines, can be re-rendered: reports/<suite>/ gets leaderboard.md,
tables.tex, index.html, the figures as PNG and PDF, and the cells' sample grids.

A report is rendered into a temporary sibling folder and swapped in only when complete: with
no rows to render, an unusable baseline, a failing figure or a full disk, the report already
there is left as it was. Only names that passed validation become paths, and nothing is
written outside reports/<suite>/. Re-rendering the same rows gives the same bytes.
"""
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.paths import ensure_writable
from bench.report import captions, comparison, curves, html, latex, markdown, pairs, plots
from bench.report.board import Board, build_board, group_rows, ok, row_order
from bench.report.text import clean_strings
from bench.store import ResultStore, latest_per_cell, read_rows
from methods.errors import DiffbenchError, StorageError
from methods.registry import validate_name

GRID_PATH = re.compile(r"samples/[0-9a-f]{8,64}\.png")
OUTPUT_SUFFIXES = (".md", ".tex", ".html", ".png", ".pdf")


@dataclass
class Rendered:
    """Everything a format writes, computed once."""
    suite: str
    rows: list[dict]
    boards: list[Board]
    notes: list[str]
    figures: dict[int, list[tuple[str, str]]] = field(default_factory=dict)   # board -> (title, png)
    grids: list[tuple[dict, str]] = field(default_factory=list)              # (row, samples/x.png)
    comparison: tuple | None = None
    against: str | None = None


def render_report(suite: str, results_root: Path, reports_root: Path,
                  against: str | Path | None = None) -> Path:
    """Write reports/<suite>/ from results/<suite>/rows.jsonl (and, with `against`, a comparison
    with another result set); returns the report directory."""
    name = validate_name(suite, "suite name")
    store = ResultStore(results_root, name)
    baseline = read_baseline(against, Path(results_root)) if against is not None else None
    stored, problems = store.read()
    if not stored:
        raise DiffbenchError(
            f"no stored rows for suite {name!r} in {str(store.rows_path)!r}"
            + (f" ({len(problems)} damaged)" if problems else "")
            + f": run `diffbench run {name}` first, or render the published rows with "
              "--results-dir results/published; the report folder was not touched")
    ensure_writable(Path(reports_root), "reports folder", "fix its permissions, free disk space "
                    "or pass --reports-dir")
    out = Path(reports_root) / name
    staging = Path(reports_root) / f".{name}.rendering-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        write_report(name, store, stored, problems, staging, baseline, against)
        keep_other_files(out, staging)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise StorageError(f"cannot write the report under {str(reports_root)!r} "
                               f"({err.strerror or err}): free disk space or fix permissions; "
                               f"{str(out)!r} was left as it was") from None
        if isinstance(err, Exception) and not isinstance(err, DiffbenchError):
            raise DiffbenchError(f"rendering the report failed ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''}); "
                                 f"{str(out)!r} was left as it was") from err
        raise
    swap_in(staging, out)
    return out


def write_report(name, store, stored, problems, out, baseline, against) -> None:
    rows = [clean_strings(row) for row in latest_per_cell(stored)]
    paired_notes = []
    boards = [build_board(group, pairs=group_pairs(group, store.directory, paired_notes),
                          across_models=group.task == "train-curve")   # each snapshot is a model
              for group in group_rows(rows)]
    rendered = Rendered(name, rows, boards, captions.notes(rows, boards, name) + problems + paired_notes
                        + fidelity_notes(boards, store.directory))
    superseded = len(stored) - len(rows)
    if superseded:
        rendered.notes.append(f"{superseded} earlier row(s) of cells measured again are not shown "
                              "(each cell shows its newest row).")
    unmerged = store.unmerged_shard_rows()
    if unmerged:
        rendered.notes.append(f"{unmerged} row(s) in shard files are not in this report yet: run "
                              f"`diffbench merge {name}`, then render again.")
    rendered.figures = draw_figures(boards, out)
    rendered.grids = copy_grids(rows, store.directory, out)
    if rendered.grids:
        plots.sample_panels([(captions.grid_caption(r), out / path) for r, path in rendered.grids],
                            out / "samples")
    if baseline is not None:
        baseline_rows, baseline_problems, baseline_dir = baseline
        rendered.comparison = comparison.compare_rows(rows, latest_per_cell(baseline_rows),
                                                   store.directory, baseline_dir)
        rendered.against = str(against)
        rendered.notes += baseline_problems
    (out / "leaderboard.md").write_text(markdown_report(rendered))
    (out / "tables.tex").write_text(latex.document(
        name, boards, captions.machines(rows) if rows else "unknown hardware", rendered.notes,
        {index: board_extras(board) for index, board in enumerate(boards)}))
    (out / "index.html").write_text(html_report(rendered, out))


def fidelity_notes(boards: list[Board], results_dir: Path) -> list[str]:
    """Paired PSNR and SSIM differences of each fidelity table's rows from their stored
    per-image values (a note saying why, when those are unusable)."""
    notes = []
    for board in (b for b in boards if b.group.task in FIDELITY_TASKS and not b.across_models):
        try:
            notes += [line for metric in ("psnr", "ssim")
                      for line in pairs.per_image_lines(board.title, board.rows, results_dir, metric)]
        except DiffbenchError as err:
            notes.append(f"{board.title}: paired PSNR / SSIM left out ({err}).")
    return notes


def group_pairs(group, results_dir: Path, notes: list[str]):
    """The group's paired statistics, or None (with a note when stored features are unusable:
    the report then ranks by value, as for rows stored without features)."""
    try:
        return pairs.board_pairs(group.rows, results_dir)
    except DiffbenchError as err:
        notes.append(f"Paired statistics left out ({err}); ranks are by value.")
        return None


def keep_other_files(out: Path, staging: Path) -> None:
    """Carry over what a user put in the report folder (anything a render does not write)."""
    if not out.is_dir():
        return
    for path in out.iterdir():
        if path.name == "samples" or (path.is_file() and path.suffix in OUTPUT_SUFFIXES):
            continue
        if path.is_dir():
            shutil.copytree(path, staging / path.name, symlinks=True)
        else:
            shutil.copy2(path, staging / path.name, follow_symlinks=False)


def swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by the finished `staging` folder: two renames, the old folder removed last."""
    retired = out.with_name(f".{out.name}.retired-{os.getpid()}")
    if out.exists():
        os.replace(out, retired)
    os.replace(staging, out)
    shutil.rmtree(retired, ignore_errors=True)


def read_baseline(against: str | Path, results_root: Path) -> tuple[list[dict], list[str], Path]:
    """The `--against` rows, checked before anything is written (the path must exist and hold
    at least one intact diffbench row), and the folder their stored features are in."""
    path = resolve_against(against, results_root)
    try:
        rows, problems = read_rows(path)
    except OSError as err:
        raise DiffbenchError(f"--against {str(against)!r}: cannot read {str(path)!r} "
                             f"({err.strerror or err})") from None
    if not rows:
        what = f"{len(problems)} damaged or foreign line(s)" if problems else "no rows"
        raise DiffbenchError(f"--against {str(against)!r}: {str(path)!r} holds no intact "
                             f"diffbench row ({what}): give a results directory, a rows.jsonl "
                             "file or a suite name with stored rows")
    return rows, problems, path.parent


def resolve_against(against: str | Path, results_root: Path) -> Path:
    """A rows.jsonl file, a directory holding one, or a suite name under the results dir."""
    text, path = str(against), Path(against)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "rows.jsonl").is_file():
            return path / "rows.jsonl"
        raise DiffbenchError(f"--against {text!r} is a folder without a rows.jsonl: give a "
                             "results directory, a rows.jsonl file or a suite name")
    if "/" in text or "\\" in text or path.suffix:
        raise DiffbenchError(f"--against {text!r}: no such file or folder")
    store = ResultStore(results_root, validate_name(text, "--against suite name"))
    if not store.rows_path.is_file():
        raise DiffbenchError(f"--against {text!r}: no results at {store.rows_path}; give "
                             "a results directory, a rows.jsonl file or a suite name")
    return store.rows_path


FIDELITY_TASKS = ("superres", "img2img", "inpaint", "denoise")   # tasks whose rows have PSNR and SSIM


def draw_figures(boards: list[Board], out: Path) -> dict[int, list[tuple[str, str]]]:
    """Per board its figures; the first board of a kind gets the plain file name, later ones a
    number (fingerprints come from the rows file and never become paths)."""
    figures, taken = {}, {}
    for index, board in enumerate(boards):
        if not any(ok(r) for r in board.rows):
            continue
        if board.group.task in FIDELITY_TASKS:
            kinds = [("psnr_ssim_vs_fid", "PSNR and SSIM against FID", plots.fidelity_tradeoff)]
        elif board.group.task == "train-curve":
            kinds = [("fid_vs_training", "FID against training seconds and steps",
                      lambda rows, stem: plots.training_curves(curves.training_series(rows), stem))]
        else:
            kinds = [("fid_vs_nfe", "FID against NFE", plots.fid_vs_nfe),
                     ("fid_vs_time", "FID against time per image, Pareto front marked", plots.fid_vs_time)]
            columns = pairs.nfe_columns(board.pairs) if board.pairs is not None else []
            if plots.paired_bands(columns):
                kinds.insert(0, ("fid_vs_nfe_paired", "FID against NFE with paired intervals and tie groups",
                                 lambda rows, stem, columns=columns: plots.fid_vs_nfe_paired(columns, stem)))
        if any(r["profile"] for r in board.rows):
            kinds.append(("profile", "Profiler breakdown per cell", plots.profile_bars))
        figures[index] = []
        for stem, title, draw in kinds:
            taken[stem] = taken.get(stem, 0) + 1
            name = stem if taken[stem] == 1 else f"{stem}-{taken[stem]}"
            png, _ = draw(board.rows, out / name)
            figures[index].append((title, png))
    return figures


def copy_grids(rows: list[dict], results_dir: Path, out: Path) -> list[tuple[dict, str]]:
    """Each successful cell's sample grid, copied under samples/; a grid path that is not the
    runner's own `samples/<hex>.png` is ignored (the rows file is input, not trusted)."""
    grids = []
    for row in sorted(rows, key=row_order):
        relative = row["samples_grid"]
        if not ok(row) or not isinstance(relative, str) or not GRID_PATH.fullmatch(relative):
            continue
        source = results_dir / relative
        if source.is_file():
            (out / "samples").mkdir(exist_ok=True)
            shutil.copyfile(source, out / relative)
            grids.append((row, relative))
    return grids


def board_extras(board: Board) -> list[tuple[str, list[str], list[list[str]], str]]:
    """Tables a board's task adds after its own (title, header, body, note): a training curve's
    FID per snapshot and its time-to-FID."""
    if board.group.task == "generate":
        return cascade_extras(board)
    if board.group.task != "train-curve":
        return []
    series = curves.training_series(board.rows)
    if not series:
        return []
    return [("FID [95 % interval] at each training snapshot", *curves.curve_table(series),
             curves.images_note(series)),
            ("Time to FID: the first snapshot whose interval reaches each target",
             *curves.time_to_fid_table(series), curves.target_legend(series))]


def cascade_extras(board: Board) -> list[tuple[str, list[str], list[list[str]], str]]:
    """A generation table's cascades: NFE and milliseconds per image of each stage."""
    rows = [r for r in board.rows if ok(r) and r.get("cascade")]
    if not rows:
        return []
    header = ["cascade", "stage 1 NFE", "stage 1 ms / image", "stage 2 NFE", "stage 2 ms / image",
              "total NFE", "FID"]
    body = [[row["label"]] + [text for stage in row["cascade"]["stages"]
                              for text in (f"{stage['nfe']:g}", f"{stage['time_per_image_s'] * 1e3:.2f}")]
            + [f"{row['nfe']:g}", f"{row['metrics']['fid']['value']:.2f}"] for row in rows]
    return [("Cascades: cost per stage (generation at low resolution, then super-resolution)",
             header, body, "Times are medians over the timed batches, per stage; the row's time "
             "per image is the median of their sum.")]


def markdown_report(r: Rendered) -> str:
    esc = markdown.escape
    lines = [f"# Leaderboard: {esc(r.suite)}", ""] + [f"- {esc(n)}" for n in r.notes] + [""]
    if r.comparison:
        lines += markdown_comparison(r)
    for index, board in enumerate(r.boards):
        lines += [f"## {esc(board.title)}", "", esc(captions.protocol_caption(board.group.rows[0])), ""]
        lines += [esc(board.ranking), ""] + markdown.table(board) + [""]
        if board.cross:
            lines += [f"### {esc(board.cross.title)}", "", esc(board.cross.ranking), ""]
            lines += markdown.table(board.cross) + [""]
        lines += markdown.pivot_table(board)
        lines += [line for extra in board_extras(board) for line in markdown.text_table(*extra)]
        lines += [esc(captions.provenance_caption(board.group.rows)), ""]
        lines += [f"![{title}]({png})\n" for title, png in r.figures.get(index, [])]
    if r.grids:
        lines += ["## Samples (the same seeds in every cell)", "", "![sample grids](samples.png)", ""]
        lines += [f"**{esc(captions.grid_caption(row))}**\n\n![{esc(row['label'])}]({path})\n"
                  for row, path in r.grids]
    lines += ["## Provenance", ""] + [f"- {esc(k)}: {esc(v)}" for k, v in captions.provenance_items(r.rows)]
    return "\n".join(lines) + "\n"


def markdown_comparison(r: Rendered) -> list[str]:
    header, body, unmatched = comparison.comparison_table(*r.comparison)
    return ([f"## Against {markdown.escape(r.against)}", "", markdown.escape(comparison.RULES), ""]
            + markdown.text_table(comparison.TABLE_TITLE, header, body)
            + [f"- {markdown.escape(line)}" for line in unmatched] + [""])


def html_report(r: Rendered, out: Path) -> str:
    """Notes, the comparison with a baseline (what a CI reader opened the page for), the
    leaderboards, the sample grids folded, then provenance; a table of contents on top."""
    sections = []
    if r.comparison:
        sections.append(html_comparison(r))
    for index, board in enumerate(r.boards):
        content = (html.paragraphs([captions.protocol_caption(board.group.rows[0]), board.ranking],
                                   "caption")
                   + html.table(board) + html.cross_view(board) + html.pairwise(board)
                   + html.pivot_html(board)
                   + "".join(html.text_table(*extra) for extra in board_extras(board))
                   + html.paragraphs([captions.provenance_caption(board.group.rows)], "caption")
                   + "".join(html.figure(out / png, title) for title, png in r.figures.get(index, [])))
        sections.append((board.title, content))
    if r.grids:
        grids = "".join(html.figure(out / path, captions.grid_caption(row), "grid")
                        for row, path in r.grids)
        sections.append(("Samples (the same seeds in every cell)",
                         html.folded(f"{len(r.grids)} sample grids", grids)))
    sections.append(("Provenance", html.definition_list(captions.provenance_items(r.rows))))
    return html.page(f"diffbench report: {r.suite}", html.paragraphs(r.notes), sections)


def html_comparison(r: Rendered) -> tuple[str, str]:
    header, body, unmatched = comparison.comparison_table(*r.comparison)
    return (f"Against {r.against}", html.paragraphs([comparison.RULES])
            + html.text_table(comparison.TABLE_TITLE, header, body) + html.paragraphs(unmatched))
