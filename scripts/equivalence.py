"""The equivalence table of zoo-lownfe: one algorithm from several implementations (built-in,
the example plugin, k-diffusion, diffusers), configured to the same grid. For each group it gives
every member's stored FID, its paired 95 % interval against the first member (from the stored
features), and how far their samples agree: the same 64 seeds regenerated with each member on
the published EDM model, the largest pixel difference (in [-1, 1]) and the share of uint8
pixels that are identical.

Usage: python scripts/equivalence.py   (after `diffbench run zoo-lownfe --results-dir
results/published`); writes results/published/zoo-lownfe/equivalence.md and prints it.
"""
from bench.config import load_suite
from bench.data.quantize import to_uint8
from bench.paths import REPO_ROOT
from bench.quality.paired import bootstrap_fids, difference, sign_flip_p_value
from bench.quality.stored_features import load_cell_features, load_reference
from bench.run.batch import generate
from bench.run.cell import CellRun
from bench.run.runner import cell_key
from bench.run.suite import prepare
from bench.store import ResultStore, latest_per_cell

RESULTS = REPO_ROOT / "results" / "published"
SAMPLES = 64
# (what the group is, [(cell label, steps), ...]): the first member is the reference one.
GROUPS = [
    ("DPM-Solver++(2M), Karras, last step to 0", [
        ("dpmpp-3m(denoise_to_zero=True, lower_order_final=False, order=2, schedule=karras)", 5),
        ("dpmpp-2m", 5), ("k-diffusion:dpmpp_2m", 5)]),
    ("DPM-Solver++(2M), Karras, last step to 0", [
        ("dpmpp-3m(denoise_to_zero=True, lower_order_final=False, order=2, schedule=karras)", 10),
        ("dpmpp-2m", 10), ("k-diffusion:dpmpp_2m", 10)]),
    ("DPM-Solver-2, Karras, Euler step to 0 (NFE 5)", [
        ("dpm-solver-2(denoise_to_zero=True)", 2), ("k-diffusion:dpm_2", 3)]),
    # diffusers' default timesteps on the log-uniform view evaluate the same logSNR levels as
    # unipc without denoise_to_zero (rounded to integer timesteps); its last step then goes to
    # 0 (x = D), where ours stops at sigma_min without an evaluation.
    ("UniPC-3 bh2, logSNR levels", [
        ("unipc(variant=bh2)", 5),
        ("diffusers:UniPCMultistepScheduler(model=edm, solver_order=3)", 5)]),
    ("UniPC-3 bh2, logSNR levels", [
        ("unipc(variant=bh2)", 10),
        ("diffusers:UniPCMultistepScheduler(model=edm, solver_order=3)", 10)]),
]


def main() -> None:
    config = load_suite("zoo-lownfe")
    ctx = prepare(config, RESULTS)
    cells = {(cell.label, cell.steps): cell for cell in config.cells}
    rows = {r["cell_key"]: r for r in latest_per_cell(ResultStore(RESULTS, "zoo-lownfe").read()[0])}
    folder = RESULTS / "zoo-lownfe"
    lines = ["| algorithm | implementation | NFE | FID | FID - first (paired 95 %) | p (paired test) | max pixel diff | identical uint8 |",
             "|---|---|---|---|---|---|---|---|"]
    for title, members in GROUPS:
        found = [rows[cell_key(ctx, cells[member])] for member in members]
        features = [load_cell_features(folder, r["paired"]["features"]) for r in found]
        reference = load_reference(folder, found[0]["paired"]["reference"])
        resampled = bootstrap_fids(features, reference)
        fids = [r["metrics"]["fid"]["value"] for r in found]
        samples = [generate(CellRun.of(ctx, cells[m]), range(SAMPLES), None)[0] for m in members]
        for i, (member, row) in enumerate(zip(members, found)):
            d = difference(fids[i], fids[0], resampled[i], resampled[0],
                           lambda: sign_flip_p_value(features[i], features[0], reference))
            gap = (samples[i] - samples[0]).abs().max().item()
            same = (to_uint8(samples[i]) == to_uint8(samples[0])).double().mean().item()
            interval = "-" if i == 0 else f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            p_text = "-" if i == 0 else f"{d.p_value:.3g}"
            lines.append(f"| {title} | {member[0]} | {row['nfe']} | {fids[i]:.3f} | {interval} | {p_text} | "
                         f"{'-' if i == 0 else f'{gap:.2e}'} | {'-' if i == 0 else f'{same:.4%}'} |")
    text = "\n".join(lines) + "\n"
    (folder / "equivalence.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
