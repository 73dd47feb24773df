"""diffusers' schedulers and k-diffusion's samplers as methods: listed, per-sample seeded, their
NFE what the library promises, exact on a Gaussian, equal to the built-ins they share a paper
with, and run end to end on a model from a suite."""
import pytest
import torch

from bench.config import load_suite
from bench.run.cost import CountingDenoiser
from bench.run.runner import run_suite
from bench.store import ResultStore
from methods import METHODS, PerSampleRNG
from methods.errors import DiffbenchError
from methods.kdiffusion import import_sampling
from tests.helpers import GaussianDenoiser
from tests.test_cli import one_line_error, run_cli
from tests.test_external import save_unet

diffusers = pytest.importorskip("diffusers")
try:
    import_sampling()
except ImportError as err:
    pytest.skip(f"k-diffusion's sampling module does not import: {err}", allow_module_level=True)

SHAPE = (1, 4, 4)
K_DIFFUSION = sorted(m for m in METHODS if m.startswith("k-diffusion:"))
DIFFUSERS = sorted(m for m in METHODS if m.startswith("diffusers:"))
# N(0.3, 0.5^2) leaves [-1, 1]: the schedulers that clip x0 by default are run without it.
UNCLIPPED = {"diffusers:DDIMScheduler": {"clip_sample": False}, "diffusers:DDPMScheduler": {"clip_sample": False}}


class EDMRangeGaussian(GaussianDenoiser):
    """The Gaussian's exact denoiser with EDM's noise range (0.002 to 80) and no training grid."""

    def __init__(self):
        super().__init__()
        del self.sigmas
        self.sigma_min, self.sigma_max = 0.002, 80.0


def run(name, denoiser, indices, steps=10, seed=0, **hparams):
    method = METHODS.get(name)
    hparams = method.resolve_hparams({**UNCLIPPED.get(name, {}), **hparams})
    rng = PerSampleRNG(seed, indices)
    latents = rng.randn(SHAPE)
    return method.sample(denoiser, latents, 1 if name.endswith("dpm_adaptive") else steps, rng=rng,
                         **hparams)


def test_at_least_ten_diffusers_and_twelve_k_diffusion_methods_are_listed(capsys):
    code, listing, _ = run_cli(capsys, "ls", "methods")
    assert code == 0
    assert sum(line.startswith("diffusers:") for line in listing.splitlines()) >= 10
    assert sum(line.startswith("k-diffusion:") for line in listing.splitlines()) >= 12


@pytest.mark.parametrize("name", [m for m in K_DIFFUSION + DIFFUSERS if not m.endswith("dpm_adaptive")])
def test_sample_i_is_the_same_in_any_batch(gaussian_denoiser, name):
    full = run(name, gaussian_denoiser, range(12))
    singles = torch.cat([run(name, gaussian_denoiser, [i]) for i in (0, 7)])
    five = torch.cat([run(name, gaussian_denoiser, range(s, min(s + 5, 12))) for s in range(0, 12, 5)])
    torch.testing.assert_close(singles, full[[0, 7]], rtol=0, atol=1e-5)
    torch.testing.assert_close(five, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, steps, bounds", [("k-diffusion:dpm_adaptive", 10, "between 1 and 1"),
                                                  ("k-diffusion:dpmpp_3m_sde", 1, "between 2 and 1000")])
def test_steps_a_library_sampler_cannot_take_are_refused(name, steps, bounds):
    with pytest.raises(Exception, match=bounds):
        METHODS.get(name).check_steps(steps)


def test_a_scheduler_configuration_the_library_cannot_run_fails_at_scheduling(gaussian_denoiser):
    method = METHODS.get("diffusers:PNDMScheduler")
    with pytest.raises(ValueError):
        method.schedule_on(gaussian_denoiser, 3, method.resolve_hparams({}))
    sigmas = method.schedule_on(gaussian_denoiser, 3, method.resolve_hparams({"skip_prk_steps": True}))
    assert sigmas[-1] == 0 and torch.all(sigmas[:-1] > 0)


@pytest.mark.parametrize("name", [m for m in K_DIFFUSION if not m.endswith("dpm_adaptive")])
@pytest.mark.parametrize("steps", [1, 5, 17])
def test_k_diffusion_nfe_is_what_the_sampler_promises(gaussian_denoiser, name, steps):
    steps = max(steps, METHODS.get(name).min_steps)
    counter = CountingDenoiser(gaussian_denoiser)
    run(name, counter, range(2), steps=steps)
    assert counter.calls == METHODS.get(name).expected_nfe(steps)


@pytest.mark.parametrize("name, config", [(m, {}) for m in DIFFUSERS] + [
    ("diffusers:PNDMScheduler", {"skip_prk_steps": True}),
    ("diffusers:DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "sde-dpmsolver++"}),
    ("diffusers:UniPCMultistepScheduler", {"use_karras_sigmas": True})])
@pytest.mark.parametrize("steps", [4, 5, 17])
def test_diffusers_nfe_is_one_call_per_scheduler_timestep(gaussian_denoiser, name, config, steps):
    method = METHODS.get(name)
    hparams = method.resolve_hparams(config)
    promised = len(method.build_scheduler(gaussian_denoiser, steps, hparams).timesteps)
    counter = CountingDenoiser(gaussian_denoiser)
    run(name, counter, range(2), steps=steps, **config)
    assert counter.calls == promised


# dpmpp_sde's per-sample Brownian trees take minutes at this size: run with -m slow.
@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.slow) if m.endswith("dpmpp_sde") else m
                                  for m in K_DIFFUSION + DIFFUSERS])
def test_library_samplers_recover_the_gaussian_data_distribution(gaussian_denoiser, name):
    """With the exact denoiser, 200 steps land within 0.02 of the data's mean and std (the
    std's standard error over 300 x 16 values is 0.005)."""
    hparams = {"rtol": 1e-3, "atol": 1e-4} if name.endswith("dpm_adaptive") else {}
    x = run(name, gaussian_denoiser, range(300), steps=200, **hparams)
    assert abs(float(x.mean()) - gaussian_denoiser.mu) < 0.02
    assert abs(float(x.std()) - gaussian_denoiser.s) < 0.02


@pytest.mark.parametrize("steps", [2, 7, 18])
def test_k_diffusion_heun_on_karras_sigmas_equals_edm_heun(steps):
    """The two samplers on the same Karras sigmas (EDM's, Eq. 5)."""
    denoiser = EDMRangeGaussian()
    edm, theirs = METHODS.get("edm-heun"), METHODS.get("k-diffusion:heun")
    sigmas = edm.schedule_on(denoiser, steps, edm.resolve_hparams({}))
    outputs = []
    for method in (edm, theirs):
        rng = PerSampleRNG(0, range(8))
        outputs.append(method.sampler(denoiser, rng.randn(SHAPE), sigmas, rng=rng))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("steps", [2, 7, 18])
def test_k_diffusions_karras_schedule_is_edms_in_float32(steps):
    denoiser = EDMRangeGaussian()
    edm, theirs = METHODS.get("edm-heun"), METHODS.get("k-diffusion:heun")
    torch.testing.assert_close(theirs.schedule_on(denoiser, steps, theirs.resolve_hparams({})),
                               edm.schedule_on(denoiser, steps, edm.resolve_hparams({})), rtol=1e-6, atol=0)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [True, False])
def test_diffusers_ddim_adapter_equals_built_in_ddim_on_its_grid(gaussian_denoiser, eta, clip):
    """diffusers' DDIM ("leading" spacing: t, t - T//N, ...) against built-in ddim on those
    timesteps; built-in ddim recomputes eps from the clipped x0, which is DDIM's
    use_clipped_model_output."""
    config = {"clip_sample": clip, "eta": eta, "use_clipped_model_output": clip}
    adapter = METHODS.get("diffusers:DDIMScheduler")
    timesteps = adapter.build_scheduler(gaussian_denoiser, 10, adapter.resolve_hparams(config)).timesteps
    sigmas = torch.cat([gaussian_denoiser.sigmas[timesteps.long()].double(), torch.zeros(1, dtype=torch.float64)])
    rng = PerSampleRNG(0, range(6))
    latents = rng.randn(SHAPE)
    ddim = METHODS.get("ddim")
    ours = ddim.sampler(gaussian_denoiser, latents, sigmas, rng=rng,
                        **ddim.resolve_hparams({"eta": eta, "clip_denoised": clip}))
    theirs = run("diffusers:DDIMScheduler", gaussian_denoiser, range(6), **config)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, hparams, message", [
    ("diffusers:UniPCMultistepScheduler", {"solver_ordr": 2}, "has no hyper-parameter 'solver_ordr'"),
    ("diffusers:UniPCMultistepScheduler", {"beta_schedule": "linear"}, "model's training schedule"),
    ("diffusers:DPMSolverMultistepScheduler", {"solver_order": "2"}, "must be int"),
    ("k-diffusion:dpmpp_2m_sde", {"solver_type": "rk4"}, "must be one of"),
    ("k-diffusion:euler", {"s_churn": 1.0}, "has no hyper-parameter 's_churn'"),
])
def test_bad_library_hyper_parameters_are_named(name, hparams, message):
    with pytest.raises((KeyError, ValueError, DiffbenchError), match=message):
        METHODS.get(name).resolve_hparams(hparams)


def test_guidance_on_an_unconditional_model_is_refused(gaussian_denoiser):
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        run("k-diffusion:dpmpp_2m", gaussian_denoiser, range(2), cfg_scale=2.0)


LIBRARY_SUITE = """
[suite]
dataset = "digits8"
n_samples = 16
batch_size = 8

[models.eps]
source = "diffusers"
path = "{path}"

[[cells]]
method = "{method}"
steps = [3]
{extra}
"""


@pytest.mark.parametrize("method, extra", [
    ("diffusers:UniPCMultistepScheduler", 'hparams = {solver_order = 2}'),
    ("k-diffusion:dpmpp_2m", 'model = "eps"'),
])
def test_a_library_method_runs_a_suite_on_a_diffusers_unet(write_suite, tmp_path, method, extra):
    folder = save_unet(tmp_path / "my-unet")
    suite = write_suite(LIBRARY_SUITE.format(path=folder, method=method, extra=extra))
    run_suite(load_suite(str(suite)), tmp_path / "results")
    (row,), _ = ResultStore(tmp_path / "results", "tiny").read()
    assert row["status"] == "ok" and row["nfe"] == 3 and row["method"] == method


@pytest.mark.parametrize("method, extra, message", [
    ("diffusers:DPMSolverMultistepScheduler", 'hparams = {algorithm_type = "nope"}', "cannot schedule"),
    ("diffusers:EulerDiscreteScheduler", 'hparams = {timestep_spacing = "nope"}', "cannot schedule"),
    ("ddim", 'model = "nope-model"', "nope-model"),
])
def test_a_cell_its_model_cannot_serve_is_exit_2(capsys, write_suite, tmp_path, method, extra, message):
    folder = save_unet(tmp_path / "my-unet")
    suite = write_suite(LIBRARY_SUITE.format(path=folder, method=method, extra=extra)
                        + '\n[models.edm]\nrecipe = "edm"\n')
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "results"))
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "results" / "tiny").exists()



def test_an_adaptive_sampler_reports_its_mean_nfe_over_samples():
    """dpm_adaptive's step count follows each batch's error, so batches may differ: the row
    holds the mean NFE per sample; for a fixed-step method a difference is a fault."""
    from bench.run.batch import BatchOutcome
    from bench.run.measure import cell_nfe
    records = [BatchOutcome(number=0, images=8, nfe=30.0), BatchOutcome(number=1, images=4, nfe=36.0)]
    assert cell_nfe(METHODS.get("k-diffusion:dpm_adaptive"), 1, records) == 32
    with pytest.raises(RuntimeError, match="differ between batches"):
        cell_nfe(METHODS.get("k-diffusion:dpmpp_2m"), 10, records)
