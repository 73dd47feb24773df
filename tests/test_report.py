import hashlib
import re
import shutil
import subprocess

import pytest

from bench.paths import REPO_ROOT
from bench.report import render_report
from bench.report.board import Group, build_board, competition_ranks
from bench.report.latex import escape as latex_escape
from bench.report.markdown import table as markdown_table
from bench.report.plots import pareto_front
from methods.errors import DiffbenchError
from tests.report_rows import row, store_rows

HOSTILE = "<script>alert(1)</script>"
AWKWARD = "a_b%&$#"


def board(*rows):
    return build_board(Group("generate", "p1", list(rows)))


def markdown(*rows):
    return markdown_table(board(*rows))


def render(tmp_path, *rows, suite="s", grids=False, **kwargs):
    store_rows(tmp_path / "results", suite, *rows, grids=grids)
    return render_report(suite, tmp_path / "results", tmp_path / "reports", **kwargs)


def test_headers_carry_the_direction_each_metric_declares():
    header = markdown(row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 10, 7.0, 0.1))[0]
    assert "FID ↓" in header and "images / s ↑" in header and "rank (FID)" in header


def test_best_is_bold_and_second_underlined():
    lines = markdown(row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 10, 7.0, 0.1),
                     row("c", "flow", 10, 9.0, 0.3))
    assert "**5.000**" in lines[2] and "<u>7.000</u>" in lines[3]
    assert "9.000" in lines[4] and "**9.000**" not in lines[4] and "<u>9.000</u>" not in lines[4]


@pytest.mark.parametrize("values, higher, expected", [
    ([3.0, 1.0, 2.0], False, [3, 1, 2]),
    ([3.0, 1.0, 2.0], True, [1, 3, 2]),
    ([1.0, 1.0, 2.0], False, [1, 1, 3]),
    ([None, 1.0], False, [None, 1]),
])
def test_competition_ranks(values, higher, expected):
    assert competition_ranks(values, higher) == expected


def test_each_quality_metric_gets_a_rank_column():
    cells = board(row("a", "ddim", 10, 5.0, 0.2, psnr=30.0), row("b", "ddpm", 10, 7.0, 0.1, psnr=31.0))
    keys = [c.key for c in cells.columns]
    ranks = {k: [line[keys.index(k)].text for line in cells.cells] for k in ("rank_fid", "rank_psnr")}
    assert ranks == {"rank_fid": ["1", "2"], "rank_psnr": ["2", "1"]}


def test_failed_rows_are_listed_but_not_ranked():
    lines = markdown(row("a", "ddim", 10, 5.0, 0.2), row("b", "bad", 10, 1.0, 0.1, status="error"))
    bad, ddim = lines[2], lines[3]       # rows are ordered by method name
    assert "**5.000**" in ddim and "error: boom" in bad and "1.000" not in bad


def test_metric_uncertainty_is_shown_beside_its_value():
    assert "**5.00** ± 0.25" in markdown(row("a", "ddim", 10, 5.0, 0.2, fid_error=0.25))[2]


@pytest.mark.parametrize("value, error, shown", [
    (133.7, 15.7, ("134", "16")), (83.54, 4.21, ("83.5", "4.2")), (1194.2, 153.0, ("1190", "150")),
    (0.01234, 0.00045, ("0.01234", "0.00045")), (7.0, 0.0, ("7", "0")),
])
def test_a_value_is_printed_to_its_uncertainty(value, error, shown):
    from bench.report.board import to_uncertainty
    assert to_uncertainty(value, error) == shown


def test_identical_images_give_a_null_psnr_flagged_inf_that_renders():
    import torch

    from bench.quality.fidelity import psnr_per_image
    from bench.quality.metrics import stored_metric
    from bench.quality.statistics import mean_with_error
    pixels = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    stored = stored_metric("psnr", *mean_with_error(psnr_per_image(pixels, pixels, crop=2)))
    assert stored["value"] is None and stored["flag"] == "inf"
    identical = row("a", "bicubic", 0, 5.0, 0.2)
    identical["metrics"]["psnr"] = stored
    assert "| inf |" in markdown(identical, row("b", "sr3", 10, 6.0, 0.2, psnr=20.0))[2]


def test_different_fingerprints_get_separate_tables(tmp_path):
    out = render(tmp_path, row("a", "ddim", 10, 5.0, 0.2, "p1"), row("b", "ddpm", 10, 7.0, 0.1, "p2"))
    text = (out / "leaderboard.md").read_text()
    assert text.count("| method |") == 2 and "**7.000**" in text and "**5.000**" in text
    assert "protocol p1" in text and "protocol p2" in text


def test_tasks_are_grouped_generation_first(tmp_path):
    out = render(tmp_path, row("a", "sr3", 10, 5.0, 0.2, task="superres", psnr=30.0, ssim=0.9),
                 row("b", "ddpm", 10, 7.0, 0.1))
    text = (out / "leaderboard.md").read_text()
    assert text.index("## Generation") < text.index("## Super-resolution")


@pytest.mark.parametrize("task, stems", [
    ("generate", ["fid_vs_nfe", "fid_vs_time"]),
    ("superres", ["psnr_ssim_vs_fid"]),
])
def test_each_task_gets_its_plots_as_png_and_pdf(tmp_path, task, stems):
    metrics = {"psnr": 30.0, "ssim": 0.9} if task == "superres" else {}
    out = render(tmp_path, row("a", "m", 10, 5.0, 0.2, task=task, **metrics),
                 row("b", "m", 20, 4.0, 0.4, task=task, **metrics))
    for stem in stems:
        assert (out / f"{stem}.png").stat().st_size > 1000
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")


def test_profiled_rows_get_the_breakdown_bars(tmp_path):
    profiled = row("a", "ddim", 10, 5.0, 0.2)
    profiled["profile"] = {"denoiser_s": 0.3, "sampler_arithmetic_s": 0.01, "other_s": 0.02}
    out = render(tmp_path, profiled, row("b", "ddpm", 10, 7.0, 0.1))
    assert (out / "profile.png").stat().st_size > 1000 and (out / "profile.pdf").is_file()


def test_sample_grids_are_copied_and_shown_side_by_side(tmp_path):
    out = render(tmp_path, row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 10, 7.0, 0.1), grids=True)
    assert len(list((out / "samples").glob("*.png"))) == 2 and (out / "samples.png").is_file()
    assert "samples/00000000.png" in (out / "leaderboard.md").read_text()


def test_the_pareto_front_keeps_only_undominated_points():
    assert pareto_front([(1, 9), (2, 5), (3, 6), (4, 1), (5, 1)]) == [(1, 9), (2, 5), (4, 1)]


def digests(directory):
    return {p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_report_rerenders_byte_identically(tmp_path):
    rows = [row("a", "ddim", 10, 5.0, 0.2, fid_error=0.5), row("b", "ddpm", 20, 4.0, 0.4)]
    out = render(tmp_path, *rows, grids=True)
    first = digests(out)
    assert digests(render_report("s", tmp_path / "results", tmp_path / "reports")) == first


def test_a_figure_of_a_vanished_group_does_not_linger(tmp_path):
    out = render(tmp_path, row("a", "ddim", 10, 5.0, 0.2))
    (out / "fid_vs_nfe-2.png").write_bytes(b"stale")
    render_report("s", tmp_path / "results", tmp_path / "reports")
    assert not (out / "fid_vs_nfe-2.png").exists()


def test_newest_row_of_a_cell_is_reported(tmp_path):
    out = render(tmp_path, row("a", "ddim", 10, 9.0, 0.2), row("a", "ddim", 10, 3.0, 0.2))
    text = (out / "leaderboard.md").read_text()
    assert "3.000" in text and "9.000" not in text


def test_a_metric_present_in_some_rows_gets_its_column_and_a_note(tmp_path):
    out = render(tmp_path, row("a", "ddim-cfg", 10, 5.0, 0.2, class_acc=0.9), row("b", "ddim", 10, 6.0, 0.2))
    text = (out / "leaderboard.md").read_text()
    assert "class acc ↑" in text and "**0.900**" in text and "class\\_acc is in 1 of 2 rows" in text


@pytest.mark.parametrize("rows, note", [
    ([row("a", "ddim", 10, 5.0, 0.2, status="error")], "Every stored row failed"),
    ([row("a", "ddim", 10, 5.0, 0.2)], "One successful row"),
])
def test_unusual_result_sets_render_with_a_note(tmp_path, rows, note):
    out = render(tmp_path, *rows)
    for name in ("leaderboard.md", "tables.tex", "index.html"):
        assert note in (out / name).read_text()


def test_user_strings_are_escaped_in_html_and_latex(tmp_path):
    hostile = row("a", HOSTILE, 10, 5.0, 0.2, hparams={"note": AWKWARD})
    hostile["label"] = HOSTILE
    out = render(tmp_path, hostile, row("b", "ddpm", 20, 4.0, 0.4))
    page = (out / "index.html").read_text()
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "note=a_b%&amp;$#" in page
    tex = (out / "tables.tex").read_text()
    assert HOSTILE not in tex and AWKWARD not in tex
    # escaped, and breakable after '_' in a wrapped column
    assert r"\textless{}script\textgreater{}" in tex and r"a\_\allowbreak{}b\%\&\$\#" in tex


@pytest.mark.parametrize("text, expected", [
    ("a_b%&$#", r"a\_b\%\&\$\#"),
    ("{x}^~\\", r"\{x\}\textasciicircum{}\textasciitilde{}\textbackslash{}"),
    ("FID∞ ↓", r"FID$\infty$ $\downarrow$"),
])
def test_latex_escape(text, expected):
    assert latex_escape(text) == expected


def test_latex_tables_have_booktabs_structure_and_a_full_caption(tmp_path):
    out = render(tmp_path, row("a", "ddim", 10, 5.0, 0.2, fid_error=0.5), row("b", "ddim", 20, 4.0, 0.4))
    tex = (out / "tables.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == 4     # the header repeats per page
    assert tex.count(r"\bottomrule") == 2 and r"\resizebox" not in tex
    assert r"\textbf{4.000}" in tex and r"\underline{5.00} $\pm$ 0.50" in tex
    assert "FID at NFE $=k$" in tex and "10 samples per cell" in tex and "lenet-x" in tex
    assert "measured on cpu (cpu, 2 threads)" in tex
    assert tex.count(r"\begin{") == tex.count(r"\end{")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_tables_compile_with_pdflatex(tmp_path):
    hostile = row("a", HOSTILE, 10, 5.0, 0.2, hparams={"note": AWKWARD}, fid_error=0.5)
    out = render(tmp_path, hostile, row("b", "ddpm", 20, 4.0, 0.4), row("c", "ddpm", 10, 6.0, 0.3))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (out / "tables.pdf").stat().st_size > 1000


def compile_latex(out):
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    return out / "tables.pdf"


def font_sizes(pdf) -> list[int]:
    """Every font size in points the PDF sets text in (pdftohtml's font table at zoom 1). Word
    boxes are no proxy: a landscape page's rotated page number has a box as high as a digit is
    wide."""
    xml = subprocess.run(["pdftohtml", "-xml", "-stdout", "-i", "-zoom", "1", str(pdf)],
                         capture_output=True, text=True, check=True).stdout
    return [int(size) for size in re.findall(r'<fontspec id="\d+" size="(\d+)"', xml)]


@pytest.mark.skipif(not all(shutil.which(t) for t in ("pdflatex", "pdffonts", "pdftohtml")),
                    reason="pdflatex or poppler-utils is not installed")
def test_a_long_table_breaks_across_pages_in_vector_fonts_no_smaller_than_7pt(tmp_path):
    rows = [row(f"k{i}", f"method-{i}", 10, 50.0 + i, 0.2, fid_error=1.3, model="eps",
                hparams={"cfg_scale": 1.0, "churn": 30}) for i in range(60)]
    out = render(tmp_path, *rows)
    pdf = compile_latex(out)
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "Type 3" not in fonts and "Type 1" in fonts
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert int(re.search(r"Pages:\s+(\d+)", pages).group(1)) >= 2     # 60 rows: not shrunk
    assert min(font_sizes(pdf)) >= 7


@pytest.mark.parametrize("suite", ["../../x", "a/b", HOSTILE])
def test_a_suite_name_that_is_not_a_plain_name_is_refused(tmp_path, suite):
    with pytest.raises(DiffbenchError):
        render_report(suite, tmp_path / "results", tmp_path / "reports")
    assert not (tmp_path / "reports").exists() and not (tmp_path / "x").exists()


def test_a_grid_path_outside_the_results_is_ignored(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    sneaky = row("a", "ddim", 10, 5.0, 0.2)
    sneaky["samples_grid"] = "../../secret.png"
    out = render(tmp_path, sneaky)
    written = [p for p in (tmp_path / "reports").rglob("*") if p.is_file()]
    assert all(out in p.parents for p in written) and not (out / "samples").exists()


PUBLISHED = sorted(p.parent.name for p in (REPO_ROOT / "reports").glob("*/tables.tex"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("suite", PUBLISHED)
def test_every_published_table_fits_its_page(tmp_path, suite):
    """No overfull box: each table fits the text width (landscape when needed), its text columns
    wrapped and broken inside long identifiers, its quality and cost columns split into two
    tables when the numbers alone are too wide."""
    shutil.copy(REPO_ROOT / "reports" / suite / "tables.tex", tmp_path)
    compile_latex(tmp_path)
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt", (tmp_path / "tables.log").read_text())
    assert not overfull, f"{suite}: boxes {overfull} pt too wide"
