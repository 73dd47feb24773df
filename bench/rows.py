"""The row schema: one flat record per (suite, cell), declared once as TypedDicts.

`new_row` builds every row; `parse_row` checks a stored one against the declared types (a row
that does not fit is skipped by the store, like a damaged line) and fills every absent optional
field with its empty value, so store, merge, speed and the report read rows through these
types: `row["provenance"]["git_sha"]`, `metric_value(row, "fid")`, never chains of
`(row.get(..) or {}).get(..)`. JSON has no NaN or inf: a non-finite number is stored as null
plus a flag (`metric_entry`).
"""
import math
import numbers
import types
import typing
from typing import Any, NotRequired, TypedDict

ROW_VERSION = 1
STATUSES = ("ok", "error", "nonfinite")
SCORED = "score"     # a row's `source` when `diffbench score` measured samples made elsewhere
COMPLETED = ("ok", "nonfinite")   # deterministic outcomes: re-running would give the same row


class Uncertainty(TypedDict, total=False):
    kind: str                   # seed_blocks | std_over_subsets | std_over_splits | sem | ...
    value: float | None         # the number shown as +-
    note: str


class MetricEntry(TypedDict):
    value: float | None
    flag: NotRequired[str | None]           # "nan" | "inf" | "-inf" when value is null
    higher_is_better: NotRequired[bool]
    uncertainty: NotRequired[Uncertainty | None]


class Timing(TypedDict):
    median: float | None
    iqr: float | None
    rounds: NotRequired[list[float]]


class Memory(TypedDict, total=False):
    kind: str                   # cuda_max_allocated | cpu_peak_rss ...
    peak_bytes: int | None
    reserved_bytes: int | None
    region: str


class ModelRef(TypedDict):
    recipe: str
    cache_key: str
    checkpoint_sha256: str


class Provenance(TypedDict, total=False):
    git_sha: str | None
    git_dirty: bool | None
    torch: str
    torch_fidelity: str
    cuda: str | None
    device: str
    device_name: str
    cpu_capability: str          # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, ...
    num_threads: int
    dataset_hash: str
    checkpoint_sha256: str | None
    extractor: str
    extractor_weights_sha256: str
    extractor_test_accuracy: float | None


class SamplesRef(TypedDict):
    path: str                   # as the user gave it
    content_sha256: str         # of the decoded pixels, as a dataset's content hash
    count: int


class Training(TypedDict):
    """A train-curve row's snapshot: how far its model's training had come."""
    step: int
    budget_steps: int
    images_seen: int
    seconds: float               # wall-clock of the training steps until the snapshot
    precision: str | None
    batch_size: int


class Row(TypedDict):
    cell_key: str
    status: str                 # one of STATUSES
    method: str
    label: str
    task: str
    steps: int
    hparams: dict[str, Any]
    metrics: dict[str, MetricEntry]
    n_samples: int
    seed: int
    row_version: NotRequired[int]
    suite: NotRequired[str]
    method_version: NotRequired[str]
    family: NotRequired[str]
    paper: NotRequired[str]
    message: NotRequired[str | None]
    model: NotRequired[ModelRef | None]
    num_parameters: NotRequired[int | None]
    dataset: NotRequired[str]
    dataset_hash: NotRequired[str]
    seed_range: NotRequired[list[int]]
    batch_size: NotRequired[int]
    nfe: NotRequired[float | None]
    nfe_expected: NotRequired[int | None]
    time_per_image_s: NotRequired[Timing | None]
    throughput_images_per_s: NotRequired[float | None]
    world_size: NotRequired[int]
    memory: NotRequired[Memory | None]
    flops_per_image: NotRequired[int | None]
    samples_grid: NotRequired[str | None]
    overhead: NotRequired[dict[str, Any] | None]
    profile: NotRequired[dict[str, Any] | None]
    compiled: NotRequired[bool]
    protocol: NotRequired[dict[str, Any]]
    protocol_fingerprint: NotRequired[str | None]
    provenance: NotRequired[Provenance]
    created_at: NotRequired[str]
    checksum: NotRequired[str]
    source: NotRequired[str]                # absent: sampled by a run; SCORED: by `diffbench score`
    samples: NotRequired[SamplesRef | None]  # the scored samples (SCORED rows only)
    paired: NotRequired[dict[str, Any] | None]   # stored features and reference (bench.quality.stored_features)
    classifier: NotRequired[dict[str, Any] | None]   # classifier guidance: the classifier and its cost
    warmup: NotRequired[dict[str, Any] | None]   # a warm-up before sampling (GITS): its cost and result
    training: NotRequired[Training | None]        # train-curve rows: the snapshot's training progress
    cascade: NotRequired[dict[str, Any] | None]   # cascades: the super-resolution stage, NFE and time per stage
    gate: NotRequired[dict[str, Any] | None]      # what `diffbench compare` accepts: {"fid": [lo, hi]}


def finite_or_none(value: float | None) -> tuple[float | None, str | None]:
    """A number as JSON can hold it: (value, None), or (None, "nan" | "inf" | "-inf")."""
    if value is None:
        return None, None
    value = float(value)
    if math.isnan(value):
        return None, "nan"
    if math.isinf(value):
        return None, "inf" if value > 0 else "-inf"
    return value, None


def finite_only(value):
    """`value` with every non-finite float inside lists and dicts replaced by null."""
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_only(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_entry(value, higher_is_better: bool, uncertainty: dict | None = None) -> MetricEntry:
    value, flag = finite_or_none(value)
    return {"value": value, "flag": flag, "higher_is_better": higher_is_better,
            "uncertainty": finite_only(uncertainty)}


def new_row(*, suite: str, cell_key: str, method, steps: int, hparams: dict, label: str,
            model: ModelRef | None, num_parameters: int, dataset, n_samples: int, seed: int,
            batch_size: int, protocol: dict, protocol_fingerprint: str, provenance: Provenance,
            compiled: bool, created_at: str, task: str | None = None,
            training: "Training | None" = None, cascade: dict | None = None,
            gate: dict | None = None) -> Row:
    """A row before measurement: identity, method, model, data and protocol; status "ok" until
    the measurement says otherwise. `task` is the method's unless the cell runs it on another
    (a generation method denoising)."""
    return {
        "row_version": ROW_VERSION, "suite": suite, "cell_key": cell_key,
        "method": method.name, "method_version": method.version, "family": method.family,
        "task": task or method.task, "paper": method.paper, "steps": steps, "hparams": hparams,
        "label": label, "model": model, "num_parameters": num_parameters,
        "dataset": dataset.name, "dataset_hash": dataset.content_hash,
        "n_samples": n_samples, "seed": seed, "seed_range": [0, n_samples], "batch_size": batch_size,
        "nfe": None, "metrics": {}, "time_per_image_s": None, "throughput_images_per_s": None,
        "memory": None, "flops_per_image": None, "samples_grid": None, "overhead": None,
        "profile": None, "compiled": compiled, "status": "ok", "message": None,
        "protocol": protocol, "protocol_fingerprint": protocol_fingerprint,
        "provenance": provenance, "created_at": created_at,
        **({"training": training} if training else {}),
        **({"cascade": cascade} if cascade else {}),
        **({"gate": gate} if gate else {}),
    }


def _type_problem(value, annotation, where: str) -> str | None:
    """Why `value` is not of the declared type, or None (unknown keys of a dict are allowed:
    a newer harness may add fields)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, option, where) for option in args]
        return None if None in problems else next(p for p in problems if p)
    if typing.is_typeddict(annotation):
        if not isinstance(value, dict):
            return f"{where}is not an object"
        hints = typing.get_type_hints(annotation)
        for key in sorted(annotation.__required_keys__ - set(value)):
            return f"{where}{key!r} missing"
        for key in sorted(set(value) & set(hints)):
            problem = _type_problem(value[key], hints[key], f"{where}{key!r} ")
            if problem:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where}is not an object"
        for key, item in value.items():
            problem = _type_problem(item, args[1], f"{where}[{key!r}] ")
            if problem:
                return problem
        return None
    if origin is list:
        if not isinstance(value, list):
            return f"{where}is not a list"
        return next(filter(None, (_type_problem(item, args[0], where) for item in value)), None)
    if annotation is Any:
        return None
    expected = {float: numbers.Real, int: int, type(None): type(None)}.get(annotation, annotation)
    if isinstance(value, bool) and annotation is not bool or not isinstance(value, expected):
        return f"{where}has the wrong type ({type(value).__name__})"
    return None


def _empty(annotation):
    """The value an absent optional field reads as: None if allowed, else an empty container."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else (annotation,)
    if type(None) in options:
        return None
    kind = typing.get_origin(options[0]) or options[0]
    return {} if kind is dict or typing.is_typeddict(kind) else [] if kind is list else kind()


ROW_TYPES = typing.get_type_hints(Row)
METRIC_TYPES = typing.get_type_hints(MetricEntry)


def row_problem(row) -> str | None:
    """Why a stored row does not fit the row schema, or None."""
    problem = _type_problem(row, Row, "field ")
    if problem:
        return problem
    if row["status"] not in STATUSES:
        return f"status {row['status']!r} is not one of {', '.join(STATUSES)}"
    if row.get("source", "") not in ("", SCORED):
        return f"source {row['source']!r} is not {SCORED!r}"
    if row["status"] == "ok" and not is_scored(row) and (
            not isinstance(row.get("nfe"), numbers.Real) or not row.get("time_per_image_s")):
        return "an ok row without nfe or time_per_image_s"
    return None


def complete(row: dict) -> Row:
    """A checked row with every optional field present (absent ones read as empty)."""
    row = {**{key: _empty(hint) for key, hint in ROW_TYPES.items()
              if key in Row.__optional_keys__}, **row}
    row["metrics"] = {name: {**{key: _empty(hint) for key, hint in METRIC_TYPES.items()
                                if key in MetricEntry.__optional_keys__}, **entry}
                      for name, entry in row["metrics"].items()}
    row["protocol"] = {"reference": {}, "metrics": {}, **row["protocol"]}
    return row


def subfield(record: dict | None, *keys: str, default=None):
    """record[k1][k2]..., where a record on the way may be null or absent (a row without a network
    has no model, a row without guidance no classifier): the one way to read into optional
    records, instead of `(row.get(name) or {}).get(key)` chains."""
    for key in keys:
        if record is None:
            return default
        record = record.get(key)
    return default if record is None else record


def is_scored(row) -> bool:
    """Samples made elsewhere: diffbench measured their quality, not their NFE, time or memory."""
    return row.get("source") == SCORED


def metric_value(row: Row, name: str) -> float | None:
    entry = row["metrics"].get(name)
    return None if entry is None else entry["value"]


def metric_error(row: Row, name: str) -> float | None:
    """The +- of a metric (its uncertainty's value), or None."""
    entry = row["metrics"].get(name)
    return None if entry is None or not entry["uncertainty"] else entry["uncertainty"].get("value")


def higher_is_better(row: Row, name: str) -> bool:
    entry = row["metrics"].get(name)
    return bool(entry and entry["higher_is_better"])


def time_iqr(row: Row) -> float:
    return subfield(row, "time_per_image_s", "iqr") or 0.0
