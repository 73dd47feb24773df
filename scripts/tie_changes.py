"""Which published tie groups the calibrated decision changed: for every published suite with
stored features, per report group and model, the rows statistically tied with the best (rank
1) by the old rule (the paired bootstrap interval contains 0) and by the new one (the paired
permutation test, bench.quality.paired), overall and in each NFE column, and how many
same-model pairs changed verdict. Prints Markdown.

    python scripts/tie_changes.py [suite ...]
"""
import sys

from bench.paths import REPO_ROOT
from bench.report.board import group_rows, line_name, network_key, model_text, ok
from bench.report.pairs import board_pairs
from bench.rows import metric_value
from bench.store import ResultStore, latest_per_cell

PUBLISHED = REPO_ROOT / "results" / "published"


def tied_with_best(rows, differences, old: bool) -> list[str]:
    best = min(rows, key=lambda r: metric_value(r, "fid"))

    def better(a, b):
        found = differences[(a["cell_key"], b["cell_key"])]
        return found.high < 0 if old else found.significant and found.value < 0
    return sorted(line_name(r) + (f" @{r['nfe']:g}" if r["nfe"] else "") for r in rows
                  if r is best or not any(better(o, r) for o in rows if o is not r))


def report(suite: str) -> list[str]:
    rows = [r for r in latest_per_cell(ResultStore(PUBLISHED, suite).read()[0]) if ok(r)]
    lines = []
    for group in group_rows(rows):
        pairs = board_pairs(group.rows, PUBLISHED / suite)
        if pairs is None:
            continue
        models: dict[str, list] = {}
        for row in pairs.rows:
            models.setdefault(network_key(row), []).append(row)
        for model, members in models.items():
            verdicts = [(pairs.differences[(a["cell_key"], b["cell_key"])].high < 0 or
                         pairs.differences[(a["cell_key"], b["cell_key"])].low > 0,
                         pairs.differences[(a["cell_key"], b["cell_key"])].significant)
                        for i, a in enumerate(members) for b in members[i + 1:]]
            if not verdicts:
                continue
            newly = sum(now and not then for then, now in verdicts)
            undone = sum(then and not now for then, now in verdicts)
            sets = [("all rows", members)] + sorted(
                ((f"NFE {nfe:g}", [r for r in members if r["nfe"] == nfe])
                 for nfe in {r["nfe"] for r in members if r["nfe"]}), key=lambda s: float(s[0][4:]))
            lines.append(f"- {suite}, {group.task}, {model_text(members[0])}: {len(members)} rows, "
                         f"{len(verdicts)} pairs: {newly} tied before and different now, {undone} "
                         "the other way")
            for name, subset in sets:
                if len(subset) < 2:
                    continue
                before, after = tied_with_best(subset, pairs.differences, True), tied_with_best(subset, pairs.differences, False)
                if before != after:
                    lines.append(f"  - {name}: tied with the best before {before}; now {after}")
    return lines


def main() -> None:
    suites = sys.argv[1:] or sorted(p.name for p in PUBLISHED.iterdir() if (p / "rows.jsonl").is_file())
    for suite in suites:
        print("\n".join(report(suite)), flush=True)


if __name__ == "__main__":
    main()
