"""What a leaderboard compares: the model of every row is shown, places and ranks are within the
same model (with an across-models view that says it is one), and diagnostics are not ranked."""
from bench.report.board import Group, build_board, model_text, pivot
from bench.report.markdown import table as markdown_table
from tests.report_rows import row
from tests.test_report import render


def two_models():
    return [row("a", "ddim", 10, 50.0, 0.2, model="eps"), row("b", "ddpm", 10, 60.0, 0.2, model="eps"),
            row("c", "ddim-cfg", 10, 10.0, 0.2, model="eps-cond"),
            row("d", "ddpm-cfg", 10, 20.0, 0.2, model="eps-cond")]


def board(rows):
    return build_board(Group("generate", "p1", rows))


def fid_cells(built):
    index = [c.key for c in built.columns].index("fid")
    return {r["label"]: cells[index] for r, cells in zip(built.rows, built.cells)}


def test_the_model_column_names_recipe_size_and_checkpoint():
    text = model_text(row("a", "ddim", 10, 5.0, 0.2, model="eps"))
    assert text.startswith("eps (0.001 M, ") and len(text.split(", ")[1].rstrip(")")) == 8
    assert "| model |" in markdown_table(board(two_models()))[0]


def test_each_model_has_its_own_best():
    places = {label: cell.place for label, cell in fid_cells(board(two_models())).items()}
    assert places == {"ddim": 1, "ddpm": 2, "ddim-cfg": 1, "ddpm-cfg": 2}


def test_the_across_models_view_ranks_every_row_and_says_so():
    cross = board(two_models()).cross
    places = {label: cell.place for label, cell in fid_cells(cross).items()}
    assert places == {"ddim-cfg": 1, "ddpm-cfg": 2, "ddim": None, "ddpm": None}
    assert "across models" in cross.title and "with its network" in cross.ranking


def test_one_model_needs_no_across_models_view():
    assert board(two_models()[:2]).cross is None


def test_the_pivot_places_per_model_in_each_nfe_column():
    rows = two_models() + [row("e", "ddim", 20, 40.0, 0.2, model="eps"),
                           row("f", "ddim-cfg", 20, 9.0, 0.2, model="eps-cond")]
    names, nfes, grid = pivot(Group("generate", "p1", rows))
    firsts = {name: line[0].place for (name, _), line in zip(names, grid)}
    assert nfes == [10, 20]
    assert firsts == {"ddim": 1, "ddpm": 2, "ddim-cfg": 1, "ddpm-cfg": 2}


def with_overhead(key, ratio):
    stored = row(key, "ddim", 10, 5.0, 0.2, model="eps")
    stored["overhead"] = {"ratio": ratio, "ratio_in_situ": 1.0}
    return stored


def test_sampler_overhead_is_shown_but_never_ranked():
    built = board([with_overhead("a", 1.01), with_overhead("b", 1.2)])
    index = [c.key for c in built.columns].index("overhead")
    assert [cells[index].place for cells in built.cells] == [None, None]


def test_an_implausible_overhead_is_marked_and_explained(tmp_path):
    built = board([with_overhead("a", 0.674), with_overhead("b", 1.02)])
    index = [c.key for c in built.columns].index("overhead")
    assert [cells[index].text for cells in built.cells] == ["0.674†", "1.020"]
    text = (render(tmp_path, with_overhead("a", 0.674), with_overhead("b", 1.02)) / "leaderboard.md").read_text()
    assert "0.674†" in text and "timing artefact" in text


def test_the_report_shows_both_views_and_what_each_ranks(tmp_path):
    out = render(tmp_path, *two_models())
    text = (out / "leaderboard.md").read_text()
    assert "### Generation, protocol p1, across models" in text
    assert "compare rows of the same model" in text
    assert "<details><summary>Generation, protocol p1, across models" in (out / "index.html").read_text()
    assert "among rows of the same model" in (out / "tables.tex").read_text()
