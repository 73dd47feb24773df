"""Re-key a suite's stored rows made before the metric protocol fingerprint stopped naming the
reference's computed statistics (2026-11-30: those differ in their last bits between CPU kinds,
so the same protocol got two fingerprints on an AVX2 and an AVX-512 machine).

    python scripts/refingerprint.py RESULTS_DIR SUITE [SUITE ...]

Each row whose stored fingerprint differs from the current rule's gets the new fingerprint and
the cell key the runner now gives it (rebuilt from the row's own fields, checked against its
stored key first); its sample grid, stored features and reference file are renamed to match.
Nothing else in a row changes. The suite folder is rebuilt aside and swapped in only when
complete; a suite with a damaged row, or a row whose fields do not give its stored key, is left
untouched (exit 2).
"""
import shutil
import sys
from pathlib import Path

from bench.quality.metrics import protocol_fingerprint
from bench.run.cell import identity_key, stored_cell_key
from bench.store import ROWS_FILE, canonical_json, read_rows, row_checksum
from methods.errors import DiffbenchError

SCORED = "score"


def scored_cell_key(row: dict, fingerprint: str) -> str:
    """`bench.run.score.scored_row`'s key for a row of samples scored with `--append`."""
    identity = {"source": SCORED, "samples_sha256": row["samples"]["sha256"],
                "n_samples": row["n_samples"], "protocol": row["protocol_fingerprint"]}
    if identity_key(identity) != row["cell_key"]:
        raise ValueError(f"row {row['cell_key']}: its fields do not give its stored cell key")
    return identity_key({**identity, "protocol": fingerprint})


def renamed(path: str | None, old: str, new: str) -> str | None:
    return path and str(Path(path).with_name(Path(path).name.replace(old, new, 1)))


def rekeyed(row: dict, folder: Path) -> dict:
    """`row` under the current fingerprint, its files in `folder` renamed to match."""
    fingerprint = protocol_fingerprint(row["protocol"])
    if fingerprint == row["protocol_fingerprint"]:
        return row
    rekey = scored_cell_key if row.get("source") == SCORED else stored_cell_key
    key = rekey(row, fingerprint)
    moves = {row.get("samples_grid"): renamed(row.get("samples_grid"), row["cell_key"], key)}
    paired = row.get("paired")
    if paired:
        features, reference = paired["features"], paired["reference"]
        paired = {"features": {**features, "path": renamed(features["path"], row["cell_key"], key)},
                  "reference": {**reference, "path": renamed(
                      reference["path"], row["protocol_fingerprint"], fingerprint)}}
        moves[features["path"]] = paired["features"]["path"]
        moves[reference["path"]] = paired["reference"]["path"]
    for old, new in moves.items():
        if old and (folder / old).is_file():
            (folder / old).rename(folder / new)
    row = {**row, "cell_key": key, "protocol_fingerprint": fingerprint,
           "samples_grid": moves.get(row.get("samples_grid"), row.get("samples_grid")),
           "paired": paired}
    return {**row, "checksum": row_checksum(row)}


def refingerprint(suite_dir: Path) -> int:
    """Rows re-keyed in `suite_dir` (built aside, swapped in when complete)."""
    rows, problems = read_rows(suite_dir / ROWS_FILE, as_stored=True)
    if problems or not rows:
        raise DiffbenchError(f"{suite_dir}: {problems[0] if problems else 'no rows'}; "
                             "nothing was changed")
    aside = suite_dir.with_name(suite_dir.name + ".refingerprint")
    shutil.rmtree(aside, ignore_errors=True)
    shutil.copytree(suite_dir, aside, ignore=shutil.ignore_patterns("*.lock"))
    try:
        new_rows = [rekeyed(row, aside) for row in rows]
    except (ValueError, KeyError) as err:
        shutil.rmtree(aside)
        raise DiffbenchError(f"{suite_dir}: {err}; nothing was changed") from None
    (aside / ROWS_FILE).write_text("".join(canonical_json(r) + "\n" for r in new_rows))
    old = suite_dir.with_name(suite_dir.name + ".before-refingerprint")
    suite_dir.rename(old)
    aside.rename(suite_dir)
    shutil.rmtree(old)
    return sum(a["cell_key"] != b["cell_key"] for a, b in zip(rows, new_rows))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python scripts/refingerprint.py RESULTS_DIR SUITE [SUITE ...]", file=sys.stderr)
        return 2
    root = Path(argv[0])
    for suite in argv[1:]:
        try:
            changed = refingerprint(root / suite)
        except DiffbenchError as err:
            print(f"refingerprint: {err}", file=sys.stderr)
            return 2
        print(f"{suite}: {changed} row(s) re-keyed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
