import pytest

from bench.config import load_suite
from bench.paths import REPO_ROOT
from methods.errors import DiffbenchError
from tests.helpers import TINY_SUITE


def test_tiny_suite_expands_cells(write_suite):
    config = load_suite(str(write_suite()))
    assert [(c.method, c.steps) for c in config.cells] == [("ddim", 2), ("ddim", 3), ("ddpm", 2), ("ddpm", 4)]
    assert config.name == "tiny"


def test_sweep_expands_cartesian_product(write_suite):
    text = TINY_SUITE + '\n[[cells]]\nmethod = "ddim"\nsteps = [5]\nsweep = { eta = [0.0, 0.5, 1.0] }\n'
    config = load_suite(str(write_suite(text)))
    assert [dict(c.hparams)["eta"] for c in config.cells[-3:]] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("edit, message", [
    (("[suite]", "[suite]\nbogus = 1"), r"unknown key \[suite\]\.bogus"),
    (("[suite]", "extra_table = 1\n[suite]"), "unknown top-level key 'extra_table'"),
    (('method = "ddpm"', 'method = "ddpm"\ncolour = "red"'), "unknown key 'colour'"),
    (('method = "ddpm"', 'method = "ddpm"\nhparams = { etaa = 1.0 }'), "no hyper-parameter 'etaa'"),
    (("checkpoint_every = 10", "checkpoint_every = 10\nwidth = 3"), "unknown model key 'width'"),
    (("n_samples = 24", 'n_samples = "many"'), r"\[suite\]\.n_samples must be int"),
    (("steps = [2, 3]", "steps = 3"), "steps must be a non-empty list"),
    (('method = "ddim"', 'method = "ddim"\nhparams = { eta = "zero" }'), "'eta' must be float"),
    (("steps = 20", "steps = 2.5"), "model key 'steps' must be int"),
    (('method = "ddim"', 'method = "dddim"'), "unknown method 'dddim' \(did you mean 'ddim'\?\); valid names: anagram-ddim, anagram-edm-heun, bicubic, ddim, ddim-cfg"),
    (('dataset = "digits8"', 'dataset = "nope"'), "unknown dataset 'nope'"),
    (('recipe = "eps-digits8"', 'recipe = "nope"'), "unknown model recipe 'nope'"),
    (("n_samples = 24", "n_samples = 24\nmin_samples = 1000"), "n_samples 24 is below the suite's min_samples 1000"),
    (("grid_size = 16", 'grid_size = 16\nmetrics = ["fid", "fld"]'), "unknown metric 'fld'"),
    (("grid_size = 16", 'grid_size = 16\ninception_weights = "w.pth"'), "inception_weights is set but feature_extractor is 'lenet'"),
])
def test_unknown_keys_wrong_types_and_unknown_names_are_named_with_the_file(write_suite, edit, message):
    path = write_suite(TINY_SUITE.replace(*edit, 1))
    with pytest.raises(DiffbenchError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


def test_malformed_toml_names_the_file(write_suite):
    path = write_suite("[suite\nname=")
    with pytest.raises(DiffbenchError, match="malformed TOML") as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


def test_too_few_samples_for_a_timed_round_is_refused(write_suite):
    with pytest.raises(DiffbenchError, match="timed round"):
        load_suite(str(write_suite(TINY_SUITE.replace("n_samples = 24", "n_samples = 8"))))


@pytest.mark.parametrize("name", ["../../x", "a/b", "UPPER"])
def test_unsafe_suite_names_are_refused(name):
    with pytest.raises(DiffbenchError):
        load_suite(name)


@pytest.mark.parametrize("suite", sorted(p.stem for p in (REPO_ROOT / "suites").glob("*.toml")))
def test_every_shipped_suite_validates(suite):
    config = load_suite(suite)
    assert config.cells and config.name == suite


def test_command_line_inception_weights_override_the_suites(write_suite, tmp_path):
    text = TINY_SUITE.replace("grid_size = 16", 'grid_size = 16\nfeature_extractor = "inception"\ninception_weights = "a.pth"')
    config = load_suite(str(write_suite(text)), inception_weights=str(tmp_path / "b.pth"))
    assert config.inception_weights == str((tmp_path / "b.pth").resolve())
