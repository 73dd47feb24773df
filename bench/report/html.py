"""index.html: one self-contained page (images embedded as data URIs, no external script, style
or font), so it opens from disk with no network. Every user string goes through html.escape.
Clicking a column header sorts the table by it (numerically where the cells carry a value).
"""
import base64
import html
from pathlib import Path

from bench.quality.paired import DECISION
from bench.report.board import (ROW_TEXT, Board, Cell, line_name, model_text, pivot, status_text,
                                steps_text, time_pivot)
from bench.report.captions import FID_PIVOT_TITLE, PAIRED_RANK_NOTE, TIME_PIVOT_TITLE, tie_lines
from bench.report.pairs import nfe_columns
from bench.report.text import clean_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; white-space: normal; vertical-align: bottom; }
th:hover { background: #e4e4f4; }
td.text, th.text { text-align: left; }
td.text { white-space: normal; min-width: 8em; max-width: 22em; }
.scroll { overflow-x: auto; max-width: 100%; }
.caption, .note { color: #555; font-size: 13px; max-width: 70em; }
img { max-width: 100%; }
h1, h2, h3, h4, p, li, dd, summary, figcaption { overflow-wrap: break-word; }   /* long hashes, paths */
.folded { display: none; color: #666; font-size: 11px; }
figure.grid img { image-rendering: pixelated; }   /* sample grids scale as pixels, not blurred */
nav.toc ul { columns: 2 18em; font-size: 14px; }
@media (max-width: 700px) {   /* a phone: model and hyper-parameters fold under the method */
  body { margin: 0.5em; }
  table { font-size: 12px; }
  th, td { padding: 2px 4px; }
  td.text { min-width: 9em; max-width: 11em; overflow-wrap: anywhere; }
  .wide { display: none; }
  .folded { display: inline; }
}
figure { margin: 1em 0; }
figure.grid { display: inline-block; margin: 0.5em; text-align: center; font-size: 12px; }
"""
# Sorting: numbers by their data-v value, text by content; empty values sort last either way.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, index) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", ascending ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[index].getAttribute("data-v"), y = b.cells[index].getAttribute("data-v");
        if (x === null || y === null) {
          x = a.cells[index].textContent; y = b.cells[index].textContent;
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        }
        if (x === "") return 1;
        if (y === "") return -1;
        return ascending ? Number(x) - Number(y) : Number(y) - Number(x);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(text) -> str:
    return html.escape(clean_text(text), quote=True)


def cell_html(cell: Cell) -> str:
    text = esc(cell.text)
    text = {1: f"<b>{text}</b>", 2: f"<u>{text}</u>"}.get(cell.place, text)
    if cell.spread is not None:
        text += f" ± {esc(cell.spread)}"
    if cell.rank is not None:
        text += f" #{cell.rank}"
    value = "" if cell.value is None else repr(cell.value)
    return f'<td data-v="{value}">{text}</td>'


def header(column) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(column.higher_is_better, "") if not column.rank_of else ""
    return f"<th>{esc(column.header)}{arrow}</th>"


def row_texts(row) -> list[str]:
    """The method, model and hyper-parameter cells. On a phone the last two columns fold into
    the method's cell (CSS `.wide` / `.folded`), so the quality metrics stay in view."""
    (_, name), *rest = ROW_TEXT
    folded_in = " · ".join(esc(text(row)) for _, text in rest)
    return ([f'<td class="text">{esc(name(row))}<span class="folded"><br>{folded_in}</span></td>']
            + [f'<td class="text wide">{esc(text(row))}</td>' for _, text in rest])


def table(board: Board) -> str:
    (first, _), *rest = ROW_TEXT
    heads = ([f'<th class="text">{esc(first)}</th>']
             + [f'<th class="text wide">{esc(name)}</th>' for name, _ in rest] + ["<th>steps</th>"])
    heads += [header(c) for c in board.columns] + ['<th class="text">status</th>']
    body = []
    for row, cells in zip(board.rows, board.cells):
        steps = steps_text(row)
        texts = row_texts(row)
        texts += [f'<td data-v="{steps if steps.isdigit() else ""}">{esc(steps)}</td>']
        texts += [cell_html(c) for c in cells] + [f'<td class="text">{esc(status_text(row))}</td>']
        body.append("<tr>" + "".join(texts) + "</tr>")
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def cross_view(board: Board) -> str:
    """The across-models ranking, folded: the per-model table above is the default reading."""
    if board.cross is None:
        return ""
    return folded(board.cross.title, paragraphs([board.cross.ranking], "caption") + table(board.cross))


def pairwise(board: Board) -> str:
    """Per model, who beats whom on FID: the row's FID against the column's, by the paired test
    (▲ significantly lower, ▼ higher, ≈ tied; the number is the share of bootstrap resamples
    where the row's FID is lower)."""
    pairs = board.pairs
    if pairs is None:
        return ""
    parts: dict[str, list] = {}
    for row in board.rows:
        if pairs.covers(row["cell_key"]):
            parts.setdefault(model_text(row), []).append(row)
    tables = []
    for model, rows in parts.items():
        if len(rows) < 2:
            continue
        heads = '<th class="text">row vs column</th>' + "".join(
            f"<th>{esc(line_name(r))}</th>" for r in rows)
        body = []
        for a in rows:
            cells = []
            for b in rows:
                if a is b:
                    cells.append("<td></td>")
                    continue
                found = pairs.differences[(a["cell_key"], b["cell_key"])]
                mark = "≈" if found.tied else "▲" if found.value < 0 else "▼"
                cells.append(f'<td title="FID difference {found.value:.3g}, 95 % interval '
                             f'{found.low:.3g} to {found.high:.3g}, p {found.p_value:.2g}">'
                             f'{mark} {found.a_better:.0%}</td>')
            body.append(f'<tr><td class="text">{esc(line_name(a))}</td>{"".join(cells)}</tr>')
        tables.append(f"<h4>{esc(model)}</h4>" + f'<div class="scroll"><table><thead><tr>{heads}'
                      f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    if not tables:
        return ""
    return folded("Pairwise FID comparisons (paired test)",
                  paragraphs([f"▲: the row's FID is significantly lower than the column's ({DECISION}); "
                              "▼: higher; ≈: tied. The number is the share of bootstrap resamples "
                              "in which the row's FID is lower."], "caption") + "".join(tables))


def grid_html(title: str, names, nfes, grid) -> str:
    if len(nfes) < 2:
        return ""
    heads = ('<th class="text">method</th><th class="text">model</th>'
             + "".join(f"<th>NFE {n}</th>" for n in nfes))
    body = []
    for (name, model), cells in zip(names, grid):
        texts = "".join('<td data-v=""></td>' if cell is None else cell_html(cell) for cell in cells)
        body.append(f'<tr><td class="text">{esc(name)}</td><td class="text">{esc(model)}</td>{texts}</tr>')
    return (f'<h3>{esc(title)}</h3><div class="scroll"><table class="sortable"><thead><tr>{heads}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def text_table(title: str, header: list[str], body: list[list[str]], note: str = "") -> str:
    """A titled table of plain texts, its first column text and the rest aligned as numbers."""
    def cells(texts, tag):
        return "".join(f'<{tag} class="text">{esc(t)}</{tag}>' if i == 0 else f"<{tag}>{esc(t)}</{tag}>"
                       for i, t in enumerate(texts))
    rows = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in body)
    return (f'<h3>{esc(title)}</h3><div class="scroll"><table><thead><tr>{cells(header, "th")}</tr>'
            f"</thead><tbody>{rows}</tbody></table></div>" + (paragraphs([note], "caption") if note else ""))


def pivot_html(board: Board, metric: str = "fid") -> str:
    """FID at each NFE (paired ranks and tie groups when features are stored), then time."""
    content = grid_html(FID_PIVOT_TITLE, *pivot(board.group, metric, board.pairs))
    if content and board.pairs is not None:
        content += paragraphs([PAIRED_RANK_NOTE], "caption")
        content += "<ul>" + "".join(f"<li>{esc(t)}</li>" for t in tie_lines(nfe_columns(board.pairs))) + "</ul>"
    return content + (grid_html(TIME_PIVOT_TITLE, *time_pivot(board.group)) if content else "")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure(path: Path, caption: str, css: str = "") -> str:
    return (f'<figure class="{css}"><img src="{data_uri(path)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def folded(summary: str, content: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{content}</details>"


def page(title: str, intro: str, sections: list[tuple[str, str]]) -> str:
    """The page: title, `intro`, a table of contents, then each (title, content) section;
    anchors are numbered, never made from a user's string."""
    contents = "".join(f'<li><a href="#s{i}">{esc(name)}</a></li>' for i, (name, _) in enumerate(sections, 1))
    body = "".join(f'<section id="s{i}"><h2>{esc(name)}</h2>{content}</section>'
                   for i, (name, content) in enumerate(sections, 1))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f'<h1>{esc(title)}</h1>{intro}<nav class="toc"><ul>{contents}</ul></nav>{body}'
            f"<script>{SCRIPT}</script></body></html>\n")


def paragraphs(texts: list[str], css: str = "note") -> str:
    return "".join(f'<p class="{css}">{esc(t)}</p>' for t in texts)


def definition_list(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"
