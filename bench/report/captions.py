"""Plain-text sentences a report says about its rows: what protocol a table was measured under,
what the ± means, where and with what it ran, and notes for unusual result sets. Formats escape
them when they write them."""
from bench.quality.paired import DECISION
from bench.report.board import OVERHEAD_PLAUSIBLE, SUSPECT, Board, line_name, present_metrics
from bench.rows import Row, is_scored


def protocol_caption(row: Row) -> str:
    p = row["protocol"]
    ref = p["reference"]
    caption = (f"FID with extractor {p.get('extractor')} (weights "
               f"{str(p.get('extractor_weights_sha256'))[:12]}, layer {p.get('feature_layer')}), "
               f"{p.get('n_samples')} samples against {ref.get('count')} {ref.get('dataset')} "
               f"{ref.get('split')} images; protocol {row['protocol_fingerprint']}.")
    if not str(p.get("extractor")).startswith("inception"):
        caption += " A domain-feature FID: not comparable with Inception FID."
    caption += uncertainty_caption(p["metrics"])
    sr = p.get("superres")
    if sr:
        fidelity = sr.get("fidelity", {})
        caption += (f" Super-resolution x{sr.get('scale')} ({sr.get('degradation')}) of the "
                    f"{sr.get('inputs')}; PSNR / SSIM on {fidelity.get('colour')}, "
                    f"{fidelity.get('border_crop')}-pixel border crop, data range "
                    f"{fidelity.get('data_range')}; lr_mse: {fidelity.get('lr_mse')}.")
    edit = p.get("img2img")
    if edit:
        caption += (f" Image-to-image from guides ({edit.get('guide')}) of the {edit.get('inputs')}; "
                    f"PSNR / SSIM against the guide, on {edit.get('fidelity', {}).get('colour')}.")
    hole = p.get("inpaint")
    if hole:
        caption += (f" Inpainting of the {hole.get('inputs')} with the hole {hole.get('hole')}; "
                    f"PSNR / SSIM against the original on the hole's pixels only, on "
                    f"{hole.get('fidelity', {}).get('colour')}; known-region max error: "
                    f"{hole.get('fidelity', {}).get('known_error')}.")
    level = p.get("denoise")
    if level:
        caption += (f" Denoising of the {level.get('inputs')} at DDPM t = {level.get('t')} "
                    f"(sigma = {level.get('sigma', 0):.4g}; {level.get('noise')}, noise seed "
                    f"{level.get('noise_seed')}); PSNR / SSIM against the clean image, on "
                    f"{level.get('fidelity', {}).get('colour')}; held-out pairs: {level.get('heldout')}.")
    views = p.get("anagram")
    if views:
        caption += (f" Anagrams and hybrids: each image read by {views.get('reader')} in two views "
                    f"({views.get('views')}): acc view a / b, the share read as class a / b; both "
                    f"views, the share passing both; FID: {views.get('fid')}.")
    return caption


def uncertainty_caption(settings: dict) -> str:
    parts = []
    if "fid" in settings:
        parts.append(f"FID: standard error from {settings['fid'].get('blocks')} disjoint seed "
                     "blocks (block std / sqrt(blocks))")
    if "kid" in settings:
        parts.append(f"KID: std over {settings['kid'].get('subsets')} subsets of "
                     f"{settings['kid'].get('subset_size')}")
    if "isc" in settings:
        parts.append(f"IS: std over {settings['isc'].get('splits')} splits")
    parts.append("per-image metrics: standard error over images")
    return (" ± is, for " + "; ".join(parts) + ". Bold: best; underlined: second; ranks are per "
            "quality metric. Sampler overhead (a diagnostic, not ranked): sampling time of a batch / (NFE x the bare "
            "denoiser's forward time on that batch); in situ: over the time spent inside its own "
            "denoiser calls (CPU).")


def hardware(row: Row) -> str:
    p = row["provenance"]
    capability = f"{p['cpu_capability']}, " if p.get("cpu_capability") and p.get("device") == "cpu" else ""
    return f"{p.get('device_name')} ({p.get('device')}, {capability}{p.get('num_threads')} threads)"


def machines(rows: list[Row]) -> str:
    """The machines the rows were measured on, in order of first row; with more than one, times
    compare only between rows of one machine."""
    seen = list(dict.fromkeys(hardware(r) for r in rows))
    if len(seen) == 1:
        return seen[0]
    return " and ".join(seen) + " (times compare only between rows of one machine)"


def provenance_caption(rows: list[Row]) -> str:
    p = rows[0]["provenance"]
    shas = sorted({str(r["provenance"].get("git_sha") or "unknown")[:12]
                   + (" (dirty)" if r["provenance"].get("git_dirty") else "") for r in rows})
    memory = rows[0]["memory"] or {}
    return (f"Measured on {machines(rows)}, torch {p.get('torch')}, torch-fidelity "
            f"{p.get('torch_fidelity')}, git {', '.join(shas)}. Time is the median over timed "
            f"batches (warm-up excluded) divided by the batch size; memory is {memory.get('kind')} "
            f"over {memory.get('region', 'sampling')}.")


PROVENANCE_FIELDS = ("git_sha", "git_dirty", "device", "device_name", "cpu_capability", "num_threads", "python",
                     "torch", "torch_fidelity", "cuda", "tf32_matmul", "tf32_cudnn",
                     "cudnn_benchmark", "cudnn_deterministic")


def provenance_items(rows: list[Row]) -> list[tuple[str, str]]:
    """Each provenance field with every distinct value the rows hold (a merged results file may
    hold several), then each fingerprint with its protocol."""
    items = []
    for field in PROVENANCE_FIELDS:
        values = sorted({str(r["provenance"].get(field)) for r in rows})
        items.append((field, ", ".join(values)))
    seen = {}
    for row in rows:
        seen.setdefault(str(row["protocol_fingerprint"]), protocol_caption(row))
    return items + [(f"protocol {k}", v) for k, v in seen.items()]


def notes(rows: list[Row], boards: list[Board], suite: str) -> list[str]:
    """What a reader should know before the tables: nothing stored, nothing succeeded, nothing
    to rank against, metrics that only some rows have."""
    succeeded = [r for r in rows if r["status"] == "ok"]
    found = []
    if not succeeded:
        found.append("Every stored row failed: nothing is ranked; the status column says why.")
    elif len(succeeded) == 1:
        found.append("One successful row: nothing to rank it against.")
    for board in boards:
        ranked = [r for r in board.rows if r["status"] == "ok"]
        for name in present_metrics(ranked):
            have = sum(name in r["metrics"] for r in ranked)
            if have < len(ranked):
                found.append(f"{board.title}: metric {name} is in {have} of {len(ranked)} rows; "
                             "the others show n/a.")
    suspect = sum(cell.suspect for board in boards for cells in board.cells for cell in cells)
    if suspect:
        found.append(f"{SUSPECT} {suspect} sampler-overhead value(s) outside {OVERHEAD_PLAUSIBLE[0]}"
                     f"-{OVERHEAD_PLAUSIBLE[1]}: below 1 cannot be (the sampler makes its NFE "
                     "forward passes), so it is a timing artefact of comparing two separately "
                     "timed measurements; far above 1 means much work outside the network.")
    scored = [r for r in rows if is_scored(r)]
    if scored:
        found.append(f"{len(scored)} row(s) score samples made outside diffbench (`diffbench "
                     "score`): their quality is measured as every row's is, but not how they "
                     "were made, so their NFE, time and memory are n/a.")
    return found + warmup_notes(succeeded) + tuning_notes(succeeded)


def warmup_notes(rows: list[Row]) -> list[str]:
    """What a warm-up (GITS's schedule search) cost, which its rows' NFE and time leave out: one
    note per warm-up, however many cells its result served, then each cell's levels."""
    warmups: dict[tuple, list[Row]] = {}
    for row in rows:
        warmup = row.get("warmup")
        if warmup and "found" not in warmup:    # tuning warm-ups: tuning_notes
            key = (line_name(row), warmup["method"], warmup["samples"],
                   warmup["evaluations_per_sample"], warmup["seconds"])
            warmups.setdefault(key, []).append(row)    # the cell that ran it and those reusing it
    notes = []
    for (name, method, samples, evaluations, seconds), served in warmups.items():
        shared = any(r["warmup"]["shared"] for r in served)
        levels = "; ".join(f"NFE {r['nfe']:g}: {', '.join(f'{s:.3g}' for s in r['warmup']['sigmas'])}"
                           for r in sorted(served, key=lambda r: r["nfe"]))
        notes.append(f"{name}: its schedules were found by a {method} warm-up of {samples} samples "
                     f"x {evaluations:g} teacher evaluations ({samples * evaluations:,.0f} in all, "
                     f"not in any NFE), {seconds:.1f} s here"
                     + (f", one search shared by the suite's {len(served)} cells of that model "
                        "and noise range" if shared and len(served) > 1 else
                        " (shared with the suite's other cells of that model and noise range)"
                        if shared else "")
                     + f". Levels at {levels}.")
    return notes


def tuning_notes(rows: list[Row]) -> list[str]:
    """What each cell that tuned its hyper-parameters on held-out pairs found there (its row's
    hparams keep the cell's own, 0 = tuned)."""
    notes = []
    for row in rows:
        warmup = row.get("warmup")
        if warmup and "found" in warmup:
            found = ", ".join(f"{k} = {v:g}" for k, v in warmup["found"].items())
            scores = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in warmup["scores"].items())
            notes.append(f"{line_name(row)}: {found}, chosen on {warmup['heldout_images']} "
                         f"held-out pairs ({scores}; {warmup['seconds']:.1f} s here).")
    return notes


def grid_caption(row: Row) -> str:
    if is_scored(row):
        return f"{line_name(row)}: samples made elsewhere"
    return f"{line_name(row)}, {row['steps']} steps, NFE {row['nfe']:g}"


FID_PIVOT_TITLE = "FID at NFE = k (per column, the best of each model bold, second underlined)"
PAIRED_RANK_NOTE = ("#r: the paired rank in its NFE column, 1 + the rows of the same model at "
                    f"that NFE whose FID is significantly lower ({DECISION}); the #1 rows are "
                    "statistically tied with the best.")
TIME_PIVOT_TITLE = ("Time per image (ms) at NFE = k, with the sampler overhead in situ in "
                    "brackets (sampling time over the time inside the denoiser's own calls: what "
                    "a solver's arithmetic adds, whatever the machine's speed)")


def tie_lines(columns) -> list[str]:
    """One sentence per NFE column: its best row and the rows statistically tied with it."""
    lines = []
    for column in columns:
        others = [line_name(r) for r in column.tied if r is not column.best]
        lines.append(f"NFE {column.nfe:g}: best {line_name(column.best)}"
                     + (f"; tied with it: {', '.join(others)}" if others else "; no row tied with it")
                     + f" ({len(column.rows)} rows).")
    return lines
