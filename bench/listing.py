"""What `diffbench ls` lists: every registered method, dataset, metric and recipe, and every
suite, as one record each (name, where it comes from, what it is). The same records print as
aligned text or, with `--json`, as a JSON list a script can read."""
import json
import logging

from bench.config import find_suite, suite_names
from bench.data.datasets import DATASETS
from bench.models.recipes import RECIPES
from bench.quality.metrics import METRICS
from methods import METHODS

NFE_STEPS = (1, 2, 3, 5, 10, 20, 50, 100)   # the step counts whose planned NFE a method lists
LISTS = ("methods", "datasets", "metrics", "suites", "recipes")


def first_line(text: str | None) -> str:
    return ((text or "").strip().splitlines() or [""])[0]


def planned_nfe(method) -> dict[str, int | None]:
    """NFE by step count at the method's defaults (None: adaptive, counted when it runs), for
    the step counts the method takes (a library scheduler may refuse some at its defaults)."""
    nfe, library_log = {}, logging.getLogger("diffusers")
    level = library_log.level
    library_log.setLevel(logging.ERROR)   # its notes on adjusted settings, once per step count
    try:
        for steps in (s for s in NFE_STEPS if method.min_steps <= s <= method.max_steps):
            try:
                nfe[str(steps)] = method.planned_nfe(steps, {})
            except (ValueError, RuntimeError, IndexError):
                continue
    finally:
        library_log.setLevel(level)
    return nfe


def limit_record(limit):
    """A hyper-parameter's range as JSON: [low, high], or the sorted choices."""
    return sorted(limit, key=str) if isinstance(limit, (set, frozenset)) else list(limit)


def method_record(name: str, method, nfe: bool = True) -> dict:
    """A method's record; its planned NFE by step count (a dry run of each library scheduler,
    seconds for them all) only when asked for."""
    return {"name": name, "origin": str(METHODS.origin(name)), "family": method.family,
            "task": method.task, "model": method.model, "version": method.version,
            "paper": method.paper, "steps": [method.min_steps, method.max_steps],
            "hparams": dict(method.defaults),
            "limits": {key: limit_record(limit) for key, limit in method.limits.items()},
            **({"nfe": planned_nfe(method)} if nfe else {}), "classifier_guided": method.classifier,
            "not_installed": method.missing_requirements()}


def dataset_record(name: str, loader) -> dict:
    return {"name": name, "origin": str(DATASETS.origin(name)), "description": first_line(loader.__doc__)}


def metric_record(name: str, metric) -> dict:
    return {"name": name, "origin": str(METRICS.origin(name)), "higher_is_better": metric.higher_is_better,
            "needs": metric.needs, "description": metric.description}


def recipe_record(name: str, recipe) -> dict:
    return {"name": name, "origin": str(RECIPES.origin(name)), "model": recipe.model,
            "objective": recipe.objective, "dataset": recipe.dataset or None,
            "superres": recipe.superres, "training_steps": recipe.budget.steps}


def suite_record(name: str) -> dict:
    return {"name": name, "path": str(find_suite(name))}


def records(what: str, full: bool = True) -> list[dict]:
    """Every entry of one list, by name (`full`: with what only JSON shows, such as NFE tables)."""
    if what == "methods":
        return [method_record(name, m, full) for name, m in METHODS.items()]
    if what == "datasets":
        return [dataset_record(name, loader) for name, loader in DATASETS.items()]
    if what == "metrics":
        return [metric_record(name, m) for name, m in METRICS.items()]
    if what == "recipes":
        return [recipe_record(name, r) for name, r in RECIPES.items()]
    return [suite_record(name) for name in suite_names()]


def as_json(entries: list[dict]) -> str:
    """JSON of the records (a default that is no JSON value, such as a tuple of levels, as a
    list; anything else as its text)."""
    return json.dumps(entries, indent=2, default=str)


def as_text(what: str, entries: list[dict]) -> str:
    """One aligned line per entry."""
    if what == "methods":
        return "\n".join(
            f"{e['name']:40s} {e['task']:9s} model={e['model'] or '-':9s} v{e['version']:24s} "
            f"{e['origin']:12s} {e['paper']}"
            + (f" [not installed: {', '.join(e['not_installed'])}]" if e["not_installed"] else "")
            for e in entries)
    if what == "datasets":
        return "\n".join(f"{e['name']:24s} {e['origin']:12s} {e['description']}" for e in entries)
    if what == "metrics":
        return "\n".join(f"{e['name']:24s} {e['origin']:12s} "
                         f"{'higher' if e['higher_is_better'] else 'lower'} is better; {e['description']}"
                         for e in entries)
    if what == "recipes":
        return "\n".join(f"{e['name']:24s} {e['origin']:12s} model={e['model']} objective={e['objective']} "
                         f"dataset={e['dataset'] or '(suite dataset)'} steps={e['training_steps']}"
                         for e in entries)
    return "\n".join(e["name"] for e in entries)
