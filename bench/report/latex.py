"""tables.tex: paper-style tables (booktabs rules, value $\\pm$ uncertainty, best bold, second
underlined), one per ranked group, and a "FID at NFE = k" pivot per generation group, in a
document that compiles with a stock LaTeX install (article, booktabs, longtable, pdflscape,
array, lmodern). Tables are never shrunk to fit: \\small at least, split across pages with their
header repeated, landscape when too wide, text columns wrapped and the FID-at-NFE pivot split
into column groups when even landscape is too narrow. Copy a longtable into a paper as it is.
"""
import re

from bench.report.board import ROW_TEXT, TASK_TITLES, Board, Cell, pivot, steps_text
from bench.report.captions import PAIRED_RANK_NOTE
from bench.report.text import clean_text

LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                  "#": r"\#", "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%",
                  "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
                  "|": r"\textbar{}", "∞": r"$\infty$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                  "†": r"$^\dagger$"}
PAPER_COLUMNS = ("nfe", "time_ms", "memory_mib")   # besides the quality metrics
PORTRAIT_WIDTH_CM = 17.0     # A4 with 2 cm margins
LANDSCAPE_WIDTH_CM = 23.0    # US letter turned, 2 cm margins (A4 gives 25.7)
MIN_TEXT_CM = 2.5            # a wrapped text column is never narrower
ESTIMATE_SLACK_CM = 0.7      # widths are estimated from character counts: keep this much spare
COMMANDS = re.compile(r"\\[a-zA-Z]+|[{}$]")


def escape(text) -> str:
    """Every character LaTeX treats specially becomes its text form; non-ASCII characters that
    a stock pdflatex cannot typeset become '?'."""
    out = "".join(LATEX_SPECIALS.get(ch, ch) for ch in clean_text(text))
    return out.encode("ascii", "replace").decode("ascii")


def breakable(text) -> str:
    """Escaped text that a wrapped column may also break after '_', ':' and '=' and inside
    CamelCase (method names such as k-diffusion:dpmpp_2s_ancestral or
    diffusers:DPMSolverMultistepScheduler are longer than a narrow column)."""
    text = re.sub(r"(\\_|:|=)", r"\1\\allowbreak{}", escape(text))
    text = re.sub(r"([A-Z])([A-Z][a-z])", r"\1\\allowbreak{}\2", text)   # after an acronym (DEISMultistep)
    return re.sub(r"([a-z])([A-Z])", r"\1\\allowbreak{}\2", text)     # and inside CamelCase


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
    task = TASK_TITLES.get(board.group.task, board.group.task)
    return (f"{escape(task)}: {escape(row['dataset'] or reference.get('dataset', '?'))}, "
            f"{escape(protocol.get('n_samples', row['n_samples']))} samples per cell "
            f"against {escape(reference.get('count', '?'))} {escape(reference.get('split', ''))} "
            f"images, features from {escape(protocol.get('extractor', '?'))}; measured on "
            f"{escape(hardware)}. Bold: best, underlined: second, among rows of the same model. "
            r"$\pm$: standard error (FID: over seed blocks). Protocol: see below the table.")


def footnote(board: Board) -> str:
    """What the caption's mark points to: the metric protocol's fingerprint (a reader matching
    rows needs it; a caption does not)."""
    return (r"\par\noindent Metric protocol fingerprint \texttt{"
            + escape(board.group.fingerprint) + r"}: rows are comparable only under the same one."
            + "\n")


def text_width_cm(texts: list[str]) -> float:
    """A rough width of a \\small column: its longest entry's visible characters (commands and
    braces dropped, a $\\pm$ counted as the two characters it is about as wide as) at ~0.19 cm
    each, plus the column gap."""
    visible = (len(COMMANDS.sub("", t.replace(r"$\pm$", "+-"))) for t in texts)
    return 0.19 * max(visible, default=0) + 0.4


def text_spec(widths: list[float], room: float) -> str:
    """Column specs of the text columns: left-aligned as they are when they fit `room`, else
    wrapped paragraph columns sharing it in proportion to their natural widths, a column whose
    share would fall below MIN_TEXT_CM held there and the rest shared among the others (so the
    floors never push the total past the room)."""
    if sum(widths) <= room:
        return "l" * len(widths)
    room = max(room, MIN_TEXT_CM * len(widths))
    floored: set[int] = set()
    while True:
        others = [w for i, w in enumerate(widths) if i not in floored]
        share = (room - MIN_TEXT_CM * len(floored)) / sum(others) if others else 0.0
        below = {i for i, w in enumerate(widths) if i not in floored and w * share < MIN_TEXT_CM}
        if not below:
            break
        floored |= below
    sizes = [MIN_TEXT_CM if i in floored else w * share for i, w in enumerate(widths)]
    return "".join(rf">{{\raggedright\arraybackslash}}p{{{size - 0.4:.1f}cm}}" for size in sizes)


HEAD_CHARACTERS = 10          # a number column's header wraps here, so the numbers set its width


def head_lines(head: str) -> list[str]:
    """A number column's header broken at spaces into lines of about HEAD_CHARACTERS visible
    characters."""
    lines, line = [], ""
    for word in head.split(" "):
        if line and len(COMMANDS.sub("", f"{line} {word}")) > HEAD_CHARACTERS:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def stacked(lines: list[str]) -> str:
    """Header lines right-aligned on the column's bottom line."""
    return lines[0] if len(lines) == 1 else r"\begin{tabular}[b]{@{}r@{}}" + r" \\ ".join(lines) + r"\end{tabular}"


def nfe_chunks(names_cm: float, columns_cm: list[float]) -> list[slice]:
    """Consecutive NFE columns in groups that fit a landscape page beside the name columns."""
    room = LANDSCAPE_WIDTH_CM - min(names_cm, LANDSCAPE_WIDTH_CM / 2)
    chunks, start, used = [], 0, 0.0
    for index, width in enumerate(columns_cm):
        if used + width > room and index > start:
            chunks.append(slice(start, index))
            start, used = index, 0.0
        used += width
    return chunks + [slice(start, len(columns_cm))]


def column_widths(heads: list[str], rows: list[list[str]], text_columns: int) -> list[float]:
    """Each column's natural width (cm), number columns with their headers stacked."""
    lines = [[h] for h in heads[:text_columns]] + [head_lines(h) for h in heads[text_columns:]]
    return [text_width_cm(h + [r[i] for r in rows]) for i, h in enumerate(lines)]


def fits_landscape(heads: list[str], rows: list[list[str]], text_columns: int) -> bool:
    """Whether the number columns leave the text columns at least their wrapped minimum."""
    widths = column_widths(heads, rows, text_columns)
    text = sum(min(w, MIN_TEXT_CM) for w in widths[:text_columns])
    return text + sum(widths[text_columns:]) <= LANDSCAPE_WIDTH_CM - ESTIMATE_SLACK_CM


def long_table(heads: list[str], rows: list[list[str]], text_columns: int, title: str,
               note: str) -> list[str]:
    r"""A booktabs longtable in \small, split across pages with its header repeated; turned to
    landscape when its columns cannot fit the portrait text width (no shrinking to fit)."""
    lines = [[h] for h in heads[:text_columns]] + [head_lines(h) for h in heads[text_columns:]]
    widths = column_widths(heads, rows, text_columns)
    heads = [stacked(h) for h in lines]
    landscape = sum(widths) > PORTRAIT_WIDTH_CM - ESTIMATE_SLACK_CM
    room = (LANDSCAPE_WIDTH_CM if landscape else PORTRAIT_WIDTH_CM) - ESTIMATE_SLACK_CM
    spec = text_spec(widths[:text_columns], room - sum(widths[text_columns:])) + "r" * (len(heads) - text_columns)
    head = " & ".join(heads) + r" \\"
    lines = [r"\begin{landscape}" if landscape else "", r"{\small", rf"\begin{{longtable}}{{{spec}}}",
             rf"\caption{{{title}}}\\", r"\toprule", head, r"\midrule", r"\endfirsthead",
             rf"\multicolumn{{{len(heads)}}}{{l}}{{\emph{{(continued)}}}}\\", r"\toprule", head,
             r"\midrule", r"\endhead", r"\bottomrule", r"\endfoot"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\end{longtable}}", note, r"\end{landscape}" if landscape else "", ""]
    return [line for line in lines if line]


def table(board: Board, hardware: str) -> list[str]:
    """The group's table; when its numbers leave too little room even on a landscape page, two
    tables over the same rows: quality (with NFE) and cost."""
    keep = [i for i, c in enumerate(board.columns)
            if (c.metric or c.key in PAPER_COLUMNS) and not c.rank_of]
    parts = [("", keep)]
    if not fits_landscape(*table_cells(board, keep), len(ROW_TEXT)):
        nfe = [i for i in keep if board.columns[i].key == "nfe"]
        parts = [(" Quality.", [i for i in keep if board.columns[i].metric or i in nfe]),
                 (" Cost.", nfe + [i for i in keep if not board.columns[i].metric and i not in nfe])]
    lines = []
    for title, columns in parts:
        heads, rows = table_cells(board, columns)
        lines += long_table(heads, rows, len(ROW_TEXT), caption(board, hardware) + title,
                            footnote(board))
    return lines


def table_cells(board: Board, columns: list[int]) -> tuple[list[str], list[list[str]]]:
    """Heads and rows (successful ones) of the text columns, steps and `columns`."""
    heads = ([escape(name.capitalize()) for name, _ in ROW_TEXT] + ["Steps"]
             + [header(board.columns[i]) for i in columns])
    rows = [[breakable(text(row)) for _, text in ROW_TEXT] + [escape(steps_text(row))]
            + [cell_text(cells[i]) for i in columns]
            for row, cells in zip(board.rows, board.cells) if row.get("status") == "ok"]
    return heads, rows


def pivot_table(board: Board, hardware: str, metric: str = "fid") -> list[str]:
    names, nfes, grid = pivot(board.group, metric, board.pairs)
    if len(nfes) < 2:
        return []
    rows = [[breakable(name), breakable(model)]
            + ["--" if cell is None else cell_text(cell) + ("" if cell.rank is None else rf" \#{cell.rank}")
               for cell in cells]
            for (name, model), cells in zip(names, grid)]
    heads = ["Method", "Model"] + [f"NFE {n}" for n in nfes]
    widths = [text_width_cm([h] + [r[i] for r in rows]) for i, h in enumerate(heads)]
    lines = []
    for part in nfe_chunks(sum(widths[:2]), widths[2:]):
        columns = [0, 1] + list(range(2, len(heads)))[part]
        shown = [r for r in rows if any(r[i] != "--" for i in columns[2:])]
        span = "" if part == slice(0, len(nfes)) else f" (NFE {nfes[part][0]} to {nfes[part][-1]})"
        lines += long_table([heads[i] for i in columns], [[r[i] for i in columns] for r in shown], 2,
                            rf"FID at NFE $=k${span}. {caption(board, hardware)}"
                            + (" " + escape(PAIRED_RANK_NOTE) if board.pairs is not None else ""),
                            footnote(board))
    return lines


def text_table(title: str, header: list[str], body: list[list[str]], note: str = "") -> list[str]:
    """A titled table of plain texts, its columns after the first split over several tables
    when they cannot fit one page."""
    heads, rows = [escape(h) for h in header], [[breakable(r[0])] + [escape(c) for c in r[1:]] for r in body]
    widths = [text_width_cm([h] + [r[i] for r in rows]) for i, h in enumerate(heads)]
    lines = []
    for part in nfe_chunks(widths[0], widths[1:]):
        columns = [0] + list(range(1, len(heads)))[part]
        lines += long_table([heads[i] for i in columns], [[r[i] for i in columns] for r in rows], 1,
                            escape(title), escape(note))
    return lines


def document(suite: str, boards: list[Board], hardware: str, notes: list[str],
             extra: dict[int, list[tuple]] | None = None) -> str:
    lines = [r"\documentclass{article}", r"\usepackage[T1]{fontenc}",
             r"\usepackage{lmodern}",   # scalable Type 1 fonts, not T1 bitmaps (Type 3)
             r"\usepackage{booktabs}", r"\usepackage{longtable}", r"\usepackage{pdflscape}",
             r"\usepackage{array}",
             r"\usepackage{graphicx}", r"\usepackage[margin=2cm]{geometry}", r"\begin{document}",
             rf"\section*{{diffbench: {escape(suite)}}}", ""]
    lines += [breakable(note) + "\n" for note in notes]   # notes name cells such as gaussian-blur(t=250)
    for board in boards:
        if any(row.get("status") == "ok" for row in board.rows):
            lines += table(board, hardware)
            if board.group.task == "generate":
                lines += pivot_table(board, hardware)
            for title, header, body, note in (extra or {}).get(boards.index(board), []):
                lines += text_table(title, header, body, note)
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"
