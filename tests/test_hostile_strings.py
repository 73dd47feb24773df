"""Strings from a rows file are a user's: none may become live Markdown, break LaTeX, trip
matplotlib's mathtext, or carry control and bidi characters into any output."""
import copy
import shutil
import subprocess

import pytest
from markdown_it import MarkdownIt

from bench.report import render_report
from tests.report_rows import PROTOCOL, row, store_rows

INJECTIONS = ["x\n![p](http://tracker.example/p.png)", "[c](javascript:alert(1))", "a\\|b | c",
              "<img src=x onerror=alert(1)>", "see www.example.com or https://example.com",
              "`code` **bold** ~~gone~~"]
INVISIBLE = ["nul\x00byte", "evil\u202egnp.exe", "bell\x07", "zero\u200bwidth", "iso\u2066late"]


def render_hostile(tmp_path, text, **changes):
    hostile = row("a", text, 10, 5.0, 0.2, hparams={"note": text}, fid_error=0.5)
    hostile.update(changes)
    store_rows(tmp_path / "results", "s", hostile, row("b", "ddpm", 20, 4.0, 0.4),
               row("c", "ddpm", 10, 6.0, 0.3))
    return render_report("s", tmp_path / "results", tmp_path / "reports")


def markdown_structure(out) -> dict[str, int]:
    """What leaderboard.md renders to, counted: links, images, emphasis, code, table cells."""
    rendered = MarkdownIt("gfm-like").render((out / "leaderboard.md").read_text())
    return {tag: rendered.count(tag) for tag in
            ("<a ", "<img", "<script", "<em>", "<strong>", "<code>", "<s>", "<td", "<th", "<tr")}


@pytest.mark.parametrize("text", INJECTIONS)
def test_no_user_string_becomes_live_markdown(tmp_path, text):
    """The report renders to the same HTML structure as with a plain name."""
    plain = markdown_structure(render_hostile(tmp_path / "plain", "plain"))
    assert markdown_structure(render_hostile(tmp_path / "hostile", text)) == plain


@pytest.mark.parametrize("text", INVISIBLE)
def test_control_and_bidi_characters_reach_no_output(tmp_path, text):
    out = render_hostile(tmp_path, text)
    for name in ("leaderboard.md", "index.html", "tables.tex"):
        content = (out / name).read_text()
        assert not any(ch in content for ch in "\x00\u202e\x07\u200b\u2066"), name


@pytest.mark.parametrize("text", ["$x^2$ costs $\\alpha$", "$", "\\frac{1}{0}$", "a_{b}^$"])
def test_dollar_signs_in_names_do_not_break_the_figures(tmp_path, text):
    out = render_hostile(tmp_path, text)
    assert (out / "fid_vs_nfe.png").stat().st_size > 1000 and (out / "fid_vs_time.pdf").is_file()


def protocol_with_newlines():
    protocol = copy.deepcopy(PROTOCOL)
    protocol["reference"]["dataset"] = "two\nlines\n\n\\end{document}"
    protocol["extractor"] = "ext\r\nractor"
    return protocol


def test_a_newline_in_a_caption_stays_inside_its_line(tmp_path):
    out = render_hostile(tmp_path, "m\nx", protocol=protocol_with_newlines(),
                         dataset="two\nlines\n\n\\end{document}")
    tex = (out / "tables.tex").read_text()
    caption = next(line for line in tex.splitlines() if line.lstrip().startswith(r"\caption{"))
    assert "two lines" in caption and r"\textbackslash{}end" in caption


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_with_newlines_and_invisible_characters_compiles(tmp_path):
    out = render_hostile(tmp_path, "m\n\n\x00\u202ex $y$", protocol=protocol_with_newlines(),
                         dataset="two\nlines\n\n\\end{document}")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
