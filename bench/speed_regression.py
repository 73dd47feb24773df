"""Speed regression: `diffbench compare BASELINE CURRENT`.

Each side is a set of named timings with their raw rounds: a pytest-benchmark JSON file (saved
with `--benchmark-save-data`, so the rounds are in it), or diffbench results (each cell's timed
rounds of time per image, read by `bench.report.gate`). A benchmark is a regression only when both hold:
- the slowdown is large enough to matter: median(current) / median(baseline) > 1 + min_effect;
- it is unlikely to be noise: a one-sided Mann-Whitney U test on the raw rounds gives p < alpha.
Results from different machines are refused unless the caller says they may be compared.
"""
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import mannwhitneyu

from methods.errors import DiffbenchError

MIN_EFFECT = 0.05
ALPHA = 0.01
LOADED_SPREAD = 0.10     # IQR / median of timed rounds above this: the machine was not quiet
PYTEST_MACHINE_KEYS = ("machine", "processor", "system", "python_implementation", "cpu_brand",
                       "cpu_count", "gpu_name", "cuda", "torch")


@dataclass(frozen=True)
class Timings:
    source: str
    machine: dict
    rounds: dict[str, list[float]]


@dataclass(frozen=True)
class SpeedVerdict:
    name: str
    baseline_median: float | None      # seconds
    current_median: float | None
    ratio: float | None
    p_value: float | None
    verdict: str            # regression | faster | no change | too few rounds | new | missing
    warnings: tuple[str, ...] = ()


def _pytest_machine(info: dict) -> dict:
    cpu = info.get("cpu") or {}
    flat = {**info, "cpu_brand": cpu.get("brand_raw"), "cpu_count": cpu.get("count")}
    return {k: flat.get(k) for k in PYTEST_MACHINE_KEYS if flat.get(k) is not None}


def load_pytest_benchmark(path: Path, document: dict) -> Timings:
    rounds = {}
    for bench in document.get("benchmarks") or []:
        data = (bench.get("stats") or {}).get("data")
        if not data:
            raise DiffbenchError(f"{path}: benchmark {bench.get('fullname')!r} has no raw rounds; "
                                 "save it with `pytest --benchmark-json=FILE --benchmark-save-data`")
        rounds[str(bench.get("fullname") or bench.get("name"))] = [float(t) for t in data]
    return Timings(str(path), _pytest_machine(document.get("machine_info") or {}), rounds)


def load_timings(path: str | Path) -> Timings:
    """A pytest-benchmark JSON file (diffbench results are read by `bench.report.gate`)."""
    path = Path(path)
    if not path.is_file():
        raise DiffbenchError(f"{str(path)!r} does not exist: give a pytest-benchmark JSON file, a "
                             "rows.jsonl or a results directory")
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DiffbenchError(f"{path}: not JSON ({err.__class__.__name__}); give a "
                             "pytest-benchmark JSON file or a rows.jsonl") from None
    if not isinstance(document, dict) or "benchmarks" not in document:
        raise DiffbenchError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return load_pytest_benchmark(path, document)


def smallest_p(n_baseline: int, n_current: int) -> float:
    """The smallest p-value a one-sided Mann-Whitney U test on these many rounds can give (every
    current round beyond every baseline round): 1 / C(n + m, n)."""
    return 1 / math.comb(n_baseline + n_current, n_baseline)


def relative_spread(rounds: list[float]) -> float:
    """Interquartile range over the median: how steady the machine was while timing."""
    median = statistics.median(rounds)
    if len(rounds) < 2 or median <= 0:
        return 0.0
    q1, _, q3 = statistics.quantiles(rounds, n=4)
    return (q3 - q1) / median


def judge(baseline: list[float], current: list[float], min_effect: float = MIN_EFFECT,
          alpha: float = ALPHA) -> tuple[float, float, str]:
    """(ratio of medians, p-value of the one-sided test in the direction of the change, verdict).
    With too few rounds for any ordering to reach p < alpha the verdict says so, never "no
    change"."""
    ratio = statistics.median(current) / statistics.median(baseline)
    slower = ratio >= 1
    p = float(mannwhitneyu(current, baseline, alternative="greater" if slower else "less").pvalue)
    if p < alpha and ratio > 1 + min_effect:
        return ratio, p, "regression"
    if p < alpha and ratio < 1 - min_effect:
        return ratio, p, "faster"
    if smallest_p(len(baseline), len(current)) >= alpha:
        return ratio, p, "too few rounds"
    return ratio, p, "no change"


def loaded_warnings(name: str, baseline: list[float], current: list[float]) -> list[str]:
    """A warning for each side whose rounds spread more than a quiet machine's do."""
    found = []
    for side, rounds in (("baseline", baseline), ("current", current)):
        spread = relative_spread(rounds)
        if spread > LOADED_SPREAD:
            found.append(f"{name}: {side} rounds spread {spread:.0%} of their median (IQR); above "
                         f"{LOADED_SPREAD:.0%} the machine was probably busy: time it again on a quiet one")
    return found


def same_machine(a: Timings, b: Timings) -> list[str]:
    """The machine fields that differ (only fields both sides record)."""
    return [k for k in sorted(set(a.machine) & set(b.machine)) if a.machine[k] != b.machine[k]]


def compare_speed(baseline: Timings, current: Timings, min_effect: float = MIN_EFFECT,
                  alpha: float = ALPHA, allow_different_machines: bool = False) -> list[SpeedVerdict]:
    differ = same_machine(baseline, current)
    if differ and not allow_different_machines:
        key = differ[0]
        raise DiffbenchError(f"{baseline.source} and {current.source} come from different machines "
                             f"({key}: {baseline.machine[key]!r} vs {current.machine[key]!r}); pass "
                             "--allow-different-machines to compare them anyway")
    verdicts = []
    for name in sorted(set(baseline.rounds) | set(current.rounds)):
        before, now = baseline.rounds.get(name), current.rounds.get(name)
        if before is None or now is None:
            verdicts.append(SpeedVerdict(name, before and statistics.median(before),
                                         now and statistics.median(now), None, None,
                                         "missing" if now is None else "new"))
            continue
        ratio, p, verdict = judge(before, now, min_effect, alpha)
        verdicts.append(SpeedVerdict(name, statistics.median(before), statistics.median(now),
                                     ratio, p, verdict, tuple(loaded_warnings(name, before, now))))
    return verdicts
