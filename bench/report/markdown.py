"""leaderboard.md: GitHub-flavoured Markdown. A user string can never become live Markdown: it
is cleaned of breaks and invisible characters, HTML-escaped (viewers render inline HTML), and
every character that starts inline Markdown (link and image brackets, emphasis, code, strike,
table pipes, backslashes) is backslash-escaped; URLs are broken so that no autolink forms."""
import html
import re

from bench.report.board import ROW_TEXT, Board, Cell, pivot, status_text, steps_text, time_pivot
from bench.report.captions import FID_PIVOT_TITLE, PAIRED_RANK_NOTE, TIME_PIVOT_TITLE, tie_lines
from bench.report.pairs import nfe_columns
from bench.report.text import clean_text

MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|~])")
AUTOLINK = re.compile(r"(?i)(://|www\.)")


def escape(text) -> str:
    text = html.escape(clean_text(text), quote=False)
    text = MARKDOWN_SPECIALS.sub(r"\\\1", text)
    return AUTOLINK.sub(lambda m: m.group(1).replace("/", "\\/").replace(".", "\\."), text)


def cell_text(cell: Cell) -> str:
    text = escape(cell.text)
    text = {1: f"**{text}**", 2: f"<u>{text}</u>"}.get(cell.place, text)
    return text if cell.spread is None else f"{text} ± {escape(cell.spread)}"


def header(column) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(column.higher_is_better, "") if not column.rank_of else ""
    return escape(column.header) + arrow


def table(board: Board) -> list[str]:
    headers = ([name for name, _ in ROW_TEXT] + ["steps"] + [header(c) for c in board.columns]
               + ["status"])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row, cells in zip(board.rows, board.cells):
        texts = ([escape(text(row)) for _, text in ROW_TEXT] + [escape(steps_text(row))]
                 + [cell_text(c) for c in cells] + [escape(status_text(row))])
        lines.append("| " + " | ".join(texts) + " |")
    return lines


def rank_text(cell: Cell) -> str:
    return "" if cell.rank is None else f" #{cell.rank}"


def grid_table(title: str, names, nfes, grid) -> list[str]:
    if len(nfes) < 2:
        return []
    lines = [escape(title) + ":", "", "| method | model | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|" + "---|" * (len(nfes) + 2)]
    for (name, model), cells in zip(names, grid):
        texts = ["" if cell is None else cell_text(cell) + rank_text(cell) for cell in cells]
        lines.append(f"| {escape(name)} | {escape(model)} | " + " | ".join(texts) + " |")
    return lines + [""]


def text_table(title: str, header: list[str], body: list[list[str]], note: str = "") -> list[str]:
    """A titled table of plain texts (every cell escaped)."""
    lines = [f"{escape(title)}:", "", "| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in body]
    return lines + ([""] + [escape(note)] if note else []) + [""]


def pivot_table(board: Board, metric: str = "fid") -> list[str]:
    """FID at each NFE (with paired ranks and the tie groups when features are stored), then
    time per image at each NFE."""
    lines = grid_table(FID_PIVOT_TITLE, *pivot(board.group, metric, board.pairs))
    if lines and board.pairs is not None:
        lines += [escape(PAIRED_RANK_NOTE), ""]
        lines += [f"- {escape(text)}" for text in tie_lines(nfe_columns(board.pairs))] + [""]
    return lines + (grid_table(TIME_PIVOT_TITLE, *time_pivot(board.group)) if lines else [])
