"""A suite's TOML tables -> its dataclasses: every key checked by name and type, sweeps expanded
into cells, paths made relative to the suite file."""
import dataclasses
import itertools
from pathlib import Path

from bench.config.checks import validate_suite
from bench.config.spec import CELL_KEYS, STAGE_KEYS, SUITE_KEYS, CellSpec, ModelSpec, SuiteConfig
from bench.data.datasets import DATASETS
from bench.quality.vit import is_vit_spec
from methods.errors import DiffbenchError
from methods.registry import did_you_mean, typed_like, validate_name, validate_number
from methods.ddpm import NUM_TRAIN_STEPS

def parse_suite(data: dict, path: Path) -> SuiteConfig:
    where = str(path)
    unknown = sorted(set(data) - {"suite", "models", "cells", "gate"})
    if unknown:
        raise DiffbenchError(f"{where}: unknown top-level key {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], ('suite', 'models', 'cells', 'gate'))}; "
                             "valid: suite, models, cells, gate")
    name = validate_name(path.stem, f"suite name (from file {where})")
    fields = {}
    for key, value in as_table(data.get("suite", {}), "[suite]", where).items():
        if key not in SUITE_KEYS:
            raise DiffbenchError(f"{where}: unknown key [suite].{key}"
                                 f"{did_you_mean(key, SUITE_KEYS)}; valid: {', '.join(SUITE_KEYS)}")
        fields[key] = typed_like(value, SUITE_KEYS[key].default, f"{where}: [suite].{key}", str)
    config = SuiteConfig(name=name, path=str(path), **fields)
    config = dataclasses.replace(config, dataset=_resolve_dataset(config.dataset, path),
                                 feature_extractor=_resolve_extractor(config.feature_extractor, path),
                                 inception_weights=_resolve_file(config.inception_weights, path),
                                 reference_stats=_resolve_file(config.reference_stats, path),
                                 models=_parse_models(data.get("models", {}), path),
                                 fid_gate=_parse_gate(data.get("gate", {}), "[gate]", where))
    config = dataclasses.replace(config, cells=_parse_cells(data.get("cells", []), where, config.fid_gate))
    validate_suite(config, where)
    return config


def as_table(value, what, where) -> dict:
    if not isinstance(value, dict):
        raise DiffbenchError(f"{where}: {what} must be a table")
    return value


def _resolve_dataset(spec: str, suite_path: Path) -> str:
    """A registered dataset name, or a folder / .npz file (relative to the suite file first)."""
    if spec in DATASETS:
        return spec
    if spec and Path(_resolve_file(spec, suite_path)).exists():
        return _resolve_file(spec, suite_path)
    raise DiffbenchError(f"{suite_path}: unknown dataset {spec!r}"
                         f"{did_you_mean(spec, DATASETS)}; valid names: "
                         f"{', '.join(DATASETS)}; or give a folder of images or an .npz file")


def _resolve_extractor(spec: str, suite_path: Path) -> str:
    """A `dinov2:PATH` / `clip:PATH` extractor's path, relative to the suite file first."""
    if not is_vit_spec(spec) or spec.endswith(":hub"):
        return spec
    kind, location = spec.split(":", 1)
    return f"{kind}:{_resolve_file(location, suite_path)}"


def _resolve_file(spec: str, suite_path: Path) -> str:
    """A file named in a suite: relative to the suite file when it exists there."""
    if not spec:
        return spec
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute() and (suite_path.parent / candidate).exists():
        candidate = suite_path.parent / candidate
    return str(candidate.resolve())


def _parse_models(models, path: Path) -> tuple[tuple[str, ModelSpec], ...]:
    where = str(path)
    parsed = []
    for kind, spec in as_table(models, "[models]", where).items():
        if isinstance(spec, str):
            spec = {"recipe": spec}
        spec = dict(as_table(spec, f"[models.{kind}]", where))
        if "source" in spec:
            parsed.append((kind, _external_spec(kind, spec, path)))
            continue
        recipe = spec.pop("recipe", None)
        if recipe is None:
            raise DiffbenchError(f"{where}: [models.{kind}] needs a 'recipe' key (or a 'source' "
                                 "for an external model)")
        parsed.append((kind, ModelSpec(recipe, tuple(sorted(spec.items())))))
    return tuple(parsed)


def _external_spec(kind: str, spec: dict, path: Path) -> ModelSpec:
    """An external model's table: no recipe, its weights' path relative to the suite file."""
    what = f"{path}: [models.{kind}]"
    source = spec.pop("source")
    if "recipe" in spec:
        raise DiffbenchError(f"{what} has both a recipe and a source: keep one")
    if not isinstance(spec.get("path"), str):
        raise DiffbenchError(f"{what}: source {source!r} needs a 'path' string")
    spec["path"] = _resolve_file(spec["path"], path)
    return ModelSpec("", tuple(sorted(spec.items())), str(source))


def _parse_gate(gate, what: str, where: str) -> tuple[float, float] | None:
    """`gate = { fid = [lo, hi] }`: the FID window (finite, 0 <= lo < hi) a comparison accepts."""
    gate = as_table(gate, what, where)
    for key in gate:
        if key != "fid":
            raise DiffbenchError(f"{where}: unknown key {key!r} in {what}"
                                 f"{did_you_mean(key, ['fid'])}; valid: fid")
    if "fid" not in gate:
        return None
    window = gate["fid"]
    if not isinstance(window, list) or len(window) != 2:
        raise DiffbenchError(f"{where}: {what}.fid must be a window [lo, hi], got {window!r}")
    low, high = (float(validate_number(v, f"{where}: {what}.fid", 0)) for v in window)
    if not low < high:
        raise DiffbenchError(f"{where}: {what}.fid must be [lo, hi] with lo < hi, got {window!r}")
    return low, high


def _parse_cells(cells, where, fid_gate=None) -> tuple[CellSpec, ...]:
    if not isinstance(cells, list) or not cells:
        raise DiffbenchError(f"{where}: needs at least one [[cells]] entry")
    expanded = []
    for number, cell in enumerate(cells, 1):
        what = f"[[cells]] #{number}"
        cell = as_table(cell, what, where)
        for key in cell:
            if key not in CELL_KEYS:
                raise DiffbenchError(f"{where}: unknown key {key!r} in {what}"
                                     f"{did_you_mean(key, CELL_KEYS)}; "
                                     f"valid: {', '.join(CELL_KEYS)}")
        if not isinstance(cell.get("method"), str):
            raise DiffbenchError(f"{where}: {what} needs a 'method' string")
        model = cell.get("model", "")
        if model:
            validate_name(model if isinstance(model, str) else repr(model), f"{what}.model")
        steps = cell.get("steps", [1])
        if not isinstance(steps, list) or not steps or not all(
                type(s) is int and s > 0 for s in steps):
            raise DiffbenchError(f"{where}: {what}.steps must be a non-empty list of positive ints")
        hparams = as_table(cell.get("hparams", {}), f"{what}.hparams", where)
        sweep = as_table(cell.get("sweep", {}), f"{what}.sweep", where)
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise DiffbenchError(f"{where}: {what}.sweep.{key} must be a non-empty list")
        masks = cell.get("mask", [""])
        if "mask" in cell and (not isinstance(masks, list) or not masks
                               or not all(isinstance(m, str) and m for m in masks)):
            raise DiffbenchError(f"{where}: {what}.mask must be a non-empty list of mask names")
        levels = cell.get("denoise_t", [0])
        if "denoise_t" in cell and (not isinstance(levels, list) or not levels or not all(
                type(t) is int and 1 <= t <= NUM_TRAIN_STEPS for t in levels)):
            raise DiffbenchError(f"{where}: {what}.denoise_t must be a non-empty list of DDPM "
                                 f"timesteps, integers in 1..{NUM_TRAIN_STEPS}")
        snapshots = cell.get("train_step", [0])
        if "train_step" in cell and (not isinstance(snapshots, list) or not snapshots or not all(
                type(s) is int and s > 0 for s in snapshots)):
            raise DiffbenchError(f"{where}: {what}.train_step must be a non-empty list of training "
                                 "steps, positive integers")
        stages = _superres_stages(cell["superres"], f"{what}.superres", where) if "superres" in cell else [None]
        gate = _parse_gate(cell["gate"], f"{what}.gate", where) if "gate" in cell else fid_gate
        for combo in itertools.product(*sweep.values()):
            merged = {**hparams, **dict(zip(sweep, combo))}
            for mask, level, snapshot, stage, steps_value in itertools.product(
                    masks, levels, snapshots, stages, steps):
                expanded.append(CellSpec(cell["method"], steps_value, tuple(sorted(merged.items())),
                                         model, mask, level, snapshot, stage, gate))
    return tuple(expanded)


def _superres_stages(stage, what: str, where: str) -> list[CellSpec]:
    """A cascade's second stage, one per step count: `superres = { method = "sr3", steps = [..] }`."""
    stage = as_table(stage, what, where)
    for key in stage:
        if key not in STAGE_KEYS:
            raise DiffbenchError(f"{where}: unknown key {key!r} in {what}"
                                 f"{did_you_mean(key, STAGE_KEYS)}; valid: {', '.join(STAGE_KEYS)}")
    if not isinstance(stage.get("method"), str):
        raise DiffbenchError(f"{where}: {what} needs a 'method' string (a super-resolution method)")
    steps = stage.get("steps", [1])
    if not isinstance(steps, list) or not steps or not all(type(s) is int and s > 0 for s in steps):
        raise DiffbenchError(f"{where}: {what}.steps must be a non-empty list of positive ints")
    model = stage.get("model", "")
    if model:
        validate_name(model if isinstance(model, str) else repr(model), f"{what}.model")
    hparams = tuple(sorted(as_table(stage.get("hparams", {}), f"{what}.hparams", where).items()))
    return [CellSpec(stage["method"], s, hparams, model) for s in steps]

