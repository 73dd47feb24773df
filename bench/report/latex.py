"""tables.tex: paper-style tables (booktabs rules, value $\\pm$ uncertainty, best bold, second
underlined), one per ranked group, and a "FID at NFE = k" pivot per generation group, in a
document that compiles with a stock LaTeX install (article, booktabs, graphicx). Copy a table
environment into a paper as it is.
"""
from bench.report.board import Board, Cell, hparams_text, pivot
from bench.report.text import clean_text

LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                  "#": r"\#", "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%",
                  "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
                  "|": r"\textbar{}", "∞": r"$\infty$", "↑": r"$\uparrow$", "↓": r"$\downarrow$"}
PAPER_COLUMNS = ("nfe", "time_ms", "memory_mib")   # besides the quality metrics


def escape(text) -> str:
    """Every character LaTeX treats specially becomes its text form; non-ASCII characters that
    a stock pdflatex cannot typeset become '?'."""
    out = "".join(LATEX_SPECIALS.get(ch, ch) for ch in clean_text(text))
    return out.encode("ascii", "replace").decode("ascii")


def cell_text(cell: Cell) -> str:
    text = escape(cell.text)
    text = {1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(cell.place, text)
    return text if cell.spread is None else rf"{text} $\pm$ {escape(cell.spread)}"


def header(column) -> str:
    arrow = {True: r" $\uparrow$", False: r" $\downarrow$"}.get(column.higher_is_better, "")
    return escape(column.header) + arrow


def caption(board: Board, hardware: str) -> str:
    row = board.group.rows[0]
    protocol = row["protocol"]
    reference = protocol["reference"]
    return (f"{escape(board.title)}: {escape(row['dataset'] or reference.get('dataset', '?'))}, "
            f"{escape(protocol.get('n_samples', row['n_samples']))} samples per cell "
            f"against {escape(reference.get('count', '?'))} {escape(reference.get('split', ''))} "
            f"images, features from {escape(protocol.get('extractor', '?'))}; measured on "
            f"{escape(hardware)}. Bold: best; underlined: second. $\\pm$: standard error "
            f"(FID: over seed blocks).")


def table(board: Board, hardware: str) -> list[str]:
    keep = [i for i, c in enumerate(board.columns)
            if (c.metric or c.key in PAPER_COLUMNS) and not c.rank_of]
    columns = [board.columns[i] for i in keep]
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption(board, hardware)}}}",
             r"\resizebox{\textwidth}{!}{%", r"\begin{tabular}{ll" + "r" * (len(columns) + 1) + "}",
             r"\toprule",
             " & ".join(["Method", "Hyper-parameters", "Steps"] + [header(c) for c in columns])
             + r" \\", r"\midrule"]
    for row, cells in zip(board.rows, board.cells):
        if row.get("status") != "ok":
            continue
        texts = [escape(row.get("label") or row.get("method")), escape(hparams_text(row)),
                 escape(row.get("steps"))] + [cell_text(cells[i]) for i in keep]
        lines.append(" & ".join(texts) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]


def pivot_table(board: Board, hardware: str, metric: str = "fid") -> list[str]:
    names, nfes, grid = pivot(board.group, metric)
    if len(nfes) < 2:
        return []
    lines = [r"\begin{table}[ht]", r"\centering",
             rf"\caption{{FID at NFE $=k$. {caption(board, hardware)}}}",
             r"\resizebox{\textwidth}{!}{%", r"\begin{tabular}{l" + "r" * len(nfes) + "}",
             r"\toprule", "Method & " + " & ".join(f"NFE {n}" for n in nfes) + r" \\", r"\midrule"]
    for name, cells in zip(names, grid):
        texts = ["--" if cell is None else cell_text(cell) for cell in cells]
        lines.append(escape(name) + " & " + " & ".join(texts) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]


def document(suite: str, boards: list[Board], hardware: str, notes: list[str]) -> str:
    lines = [r"\documentclass{article}", r"\usepackage[T1]{fontenc}",
             r"\usepackage{lmodern}",   # scalable Type 1 fonts, not T1 bitmaps (Type 3)
             r"\usepackage{booktabs}",
             r"\usepackage{graphicx}", r"\usepackage[margin=2cm]{geometry}", r"\begin{document}",
             rf"\section*{{diffbench: {escape(suite)}}}", ""]
    lines += [escape(note) + "\n" for note in notes]
    for board in boards:
        if any(row.get("status") == "ok" for row in board.rows):
            lines += table(board, hardware)
            if board.group.task == "generate":
                lines += pivot_table(board, hardware)
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"
