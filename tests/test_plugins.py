"""Plugins register through the built-ins' functions, carry their source hash, and fail whole."""
import json
import textwrap
from pathlib import Path

import pytest

from bench import plugins
from bench.config import load_suite
from methods import METHODS, PerSampleRNG
from methods.errors import DiffbenchError
from tests.helpers import TINY_EDM_MODEL, TINY_SUITE
from tests.test_cli import one_line_error, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin_dpm_solver.py"
SAMPLER_PLUGIN = """
from methods.base import register_method
from methods.ddpm import respaced_sigmas
from methods.ddim import sample_ddim

register_method(name="{name}", family="test", task="generate", model="eps", sampler=sample_ddim,
                schedule=respaced_sigmas, version="1", paper="a plugin's copy of DDIM")
"""


@pytest.fixture(autouse=True)
def unload_plugins():
    """Every plugin a test loads is gone after it."""
    yield
    for origin in list(plugins._loaded.values()):
        plugins.unload(origin)


def write_plugin(folder: Path, name: str = "my-ddim", file: str = "my_plugin.py", extra: str = "") -> Path:
    path = folder / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(SAMPLER_PLUGIN.format(name=name)) + extra)
    return path


def test_a_file_plugin_registers_its_method_with_origin_and_source_hash(tmp_path):
    path = write_plugin(tmp_path)
    origin = plugins.load_plugin(str(path))
    assert METHODS.origin("my-ddim") == origin and origin.kind == "file"
    assert METHODS.get("my-ddim").version == f"1+{origin.source_sha256[:12]}"


def test_a_suite_names_a_plugin_relative_to_its_file_and_its_cells_validate(write_suite):
    suite = write_suite(TINY_SUITE.replace('method = "ddim"', 'method = "my-ddim"')
                        .replace("[suite]", '[suite]\nplugins = ["plugins/my_plugin.py"]'))
    write_plugin(suite.parent / "plugins")
    config = load_suite(str(suite))
    assert config.plugins == ("plugins/my_plugin.py",)
    assert config.cells[0].method == "my-ddim"


def test_without_its_plugin_a_cell_naming_a_plugin_method_is_exit_2(capsys, write_suite, tmp_path):
    suite = write_suite(TINY_SUITE.replace('method = "ddim"', 'method = "my-ddim"'))
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and "unknown method 'my-ddim'" in one_line_error(err)


def test_editing_a_plugin_changes_its_methods_version(tmp_path):
    path = write_plugin(tmp_path)
    before = METHODS.get(plugins.load_plugin(str(path)) and "my-ddim").version
    write_plugin(tmp_path, extra="\n# a changed comment is a changed source\n")
    after = METHODS.get(plugins.load_plugin(str(path)) and "my-ddim").version
    assert before != after and before.startswith("1+") and after.startswith("1+")


def test_loading_the_same_plugin_twice_is_a_no_op(tmp_path):
    path = write_plugin(tmp_path)
    assert plugins.load_plugin(str(path)) == plugins.load_plugin(str(path))


def test_editing_a_plugin_changes_the_cell_key(write_suite, tmp_path):
    from bench.run.runner import cell_key
    from bench.run.suite import prepare
    suite = write_suite(TINY_SUITE.replace('method = "ddim"', 'method = "my-ddim"'))
    plugin = write_plugin(tmp_path)
    keys = []
    for comment in ("", "\n# edited\n"):
        write_plugin(tmp_path, extra=comment)
        config = load_suite(str(suite), plugins=[str(plugin)])
        keys.append(cell_key(prepare(config, tmp_path / "results"), config.cells[0]))
    assert keys[0] != keys[1]


def test_a_plugin_clashing_with_a_built_in_is_exit_2_naming_both(capsys, tmp_path):
    path = write_plugin(tmp_path, name="ddim")
    code, _, err = run_cli(capsys, "ls", "methods", "--plugin", str(path))
    line = one_line_error(err)
    assert code == 2 and "my_plugin.py" in line and "method 'ddim' is already registered (built-in)" in line


def test_a_plugin_that_fails_to_import_leaves_nothing_registered(capsys, tmp_path):
    path = write_plugin(tmp_path, extra="\nraise RuntimeError('broken after registering')\n")
    code, _, err = run_cli(capsys, "ls", "methods", "--plugin", str(path))
    line = one_line_error(err)
    assert code == 2 and "my_plugin.py" in line and "RuntimeError: broken after registering" in line
    assert "my-ddim" not in METHODS


@pytest.mark.parametrize("spec, message", [("missing_plugin.py", "does not exist"),
                                           ("no_such_module_xyz", "cannot be imported")])
def test_a_missing_plugin_is_exit_2(capsys, spec, message):
    code, _, err = run_cli(capsys, "ls", "methods", "--plugin", spec)
    assert code == 2 and message in one_line_error(err)


def test_a_module_plugin_lists_its_origin(capsys, tmp_path, monkeypatch):
    write_plugin(tmp_path, file="my_samplers_pkg/__init__.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run_cli(capsys, "ls", "methods", "--plugin", "my_samplers_pkg")
    line = next(line for line in out.splitlines() if line.startswith("my-ddim "))
    assert code == 0 and "module my_samplers_pkg" in line
    assert "built-in" in next(line for line in out.splitlines() if line.startswith("ddim "))


def test_an_installed_entry_point_is_loaded_without_being_named(capsys, tmp_path, monkeypatch):
    write_plugin(tmp_path, file="ep_samplers.py")
    info = tmp_path / "ep_samplers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-samplers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[diffbench.plugins]\nsamplers = ep_samplers\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run_cli(capsys, "ls", "methods")
    assert code == 0 and "entry point ep_samplers" in next(
        line for line in out.splitlines() if line.startswith("my-ddim "))


def test_a_plugin_objective_enters_its_recipes_cache_key(tmp_path):
    from bench.models.recipes import RECIPES
    path = tmp_path / "objective_plugin.py"
    path.write_text(textwrap.dedent("""
        import dataclasses
        from bench.models.recipes import RECIPES, register_recipe
        from methods.base import OBJECTIVES, Objective
        from methods.edm import edm_loss
        from methods.denoisers import EDMPrecond
        OBJECTIVES.register("edm-copy", Objective("edm-copy", edm_loss, EDMPrecond))
        register_recipe(dataclasses.replace(RECIPES.get("edm"), name="edm-copy", objective="edm-copy"))
        """))
    keys = []
    for comment in ("", "# edited\n"):
        path.write_text(path.read_text() + comment)
        plugins.load_plugin(str(path))
        keys.append(RECIPES.get("edm-copy").with_precision("fp32").cache_key("data"))
    assert keys[0] != keys[1]


def exact_moments_error(name: str, denoiser, steps: int, **hparams) -> float:
    method = METHODS.get(name)
    rng = PerSampleRNG(0, range(4000))
    x = method.sample(denoiser, rng.randn((1, 2, 2)), steps, rng=rng, **method.resolve_hparams(hparams))
    return abs(float(x.std()) - denoiser.s) + abs(float(x.mean()) - denoiser.mu)


def test_the_example_dpm_solver_is_second_order(gaussian_denoiser):
    """On the exact Gaussian denoiser DPM-Solver++(2M) lands on the data moments, and at few
    steps it is much closer than its first-order twin on the same Karras steps (Euler in sigma,
    i.e. DDIM: edm-euler-ancestral with eta = 0)."""
    plugins.load_plugin(str(EXAMPLE))
    assert exact_moments_error("dpmpp-2m", gaussian_denoiser, 50) < 0.005
    assert exact_moments_error("dpmpp-2m", gaussian_denoiser, 8) < 0.5 * exact_moments_error(
        "edm-euler-ancestral", gaussian_denoiser, 8, eta=0.0)


EDM_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8

""" + TINY_EDM_MODEL + """

[[cells]]
method = "dpmpp-2m"
steps = [3]
"""


def test_the_example_plugin_runs_a_suite_from_the_command_line(capsys, write_suite, tmp_path):
    code, _, err = run_cli(capsys, "run", str(write_suite(EDM_SUITE)), "--plugin", str(EXAMPLE),
                           "--no-report", "--results-dir", str(tmp_path / "r"))
    assert code == 0, err
    row = json.loads((tmp_path / "r" / "tiny" / "rows.jsonl").read_text().splitlines()[0])
    assert (row["method"], row["status"], row["nfe"]) == ("dpmpp-2m", "ok", 3)


def test_a_plugin_cannot_shadow_a_name_by_failing_halfway(tmp_path):
    path = write_plugin(tmp_path, extra=textwrap.dedent("""
        from methods.base import register_method
        from methods.ddim import sample_ddim
        from methods.ddpm import respaced_sigmas
        register_method(name="ddpm", family="test", task="generate", model="eps",
                        sampler=sample_ddim, schedule=respaced_sigmas, version="1", paper="clash")
        """))
    with pytest.raises(DiffbenchError, match="already registered"):
        plugins.load_plugin(str(path))
    assert "my-ddim" not in METHODS and METHODS.origin("ddpm").kind == "built-in"


def test_built_ins_stay_built_in_when_a_plugin_is_the_first_to_import_them():
    """In a fresh interpreter the plugin's own `import methods...` must not claim the built-ins."""
    import subprocess
    import sys
    listing = subprocess.run(
        [sys.executable, "-m", "bench", "ls", "methods", "--plugin", "examples/plugin_dpm_solver.py"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]).stdout
    origins = {line.split()[0]: line for line in listing.splitlines()}
    assert "built-in" in origins["ddim"] and "built-in" in origins["k-diffusion:heun"]
    assert "file" in origins["dpmpp-2m"]
