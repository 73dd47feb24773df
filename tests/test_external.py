"""External models: a diffusers directory or safetensors + factory run a suite without training;
their files are never unpickled and are checked against the dataset before any work."""
import hashlib
import json
import pickle
import textwrap

import pytest
import torch

from bench.config import load_suite
from bench.data.datasets import load_dataset
from bench.run.runner import run_suite
from bench.run.suite import load_models
from bench.store import ResultStore
from methods.ddpm import discrete_alphas_cumprod
from methods.denoisers import DiscreteVPDenoiser
from tests.helpers import TINY_SUITE
from tests.test_cli import one_line_error, run_cli

diffusers = pytest.importorskip("diffusers")

EXTERNAL_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8

[models.eps]
source = "{source}"
path = "{path}"
{extra}

[[cells]]
method = "ddim"
steps = [3]
"""
FACTORY = """
from methods import UNet, UNetConfig

def make_network(channel_mult=(1, 2), **config):
    return UNet(UNetConfig(channel_mult=tuple(channel_mult), **config))
"""


def tiny_unet(seed: int = 0, in_channels: int = 1, out_channels: int = 1):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=in_channels, out_channels=out_channels, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)


def save_unet(folder, **kwargs):
    tiny_unet(**kwargs).save_pretrained(folder, safe_serialization=True)
    return folder


def external_suite(write_suite, source, path, extra="", name="tiny"):
    return write_suite(EXTERNAL_SUITE.format(source=source, path=path, extra=extra), name)


@pytest.mark.parametrize("prediction", DiscreteVPDenoiser.PREDICTIONS)
def test_every_discrete_prediction_returns_x0(prediction):
    """A network predicting exactly eps, v or x0 of a known x0 gives that x0 back."""
    alphas_cumprod = discrete_alphas_cumprod("scaled_linear", 1000, 0.00085, 0.012)
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    index = torch.tensor([10, 500, 990])
    abar = alphas_cumprod[index].float().reshape(-1, 1, 1, 1)
    target = {"epsilon": eps, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0,
              "sample": x0}[prediction]
    denoiser = DiscreteVPDenoiser(lambda x, t, **_: target, alphas_cumprod, prediction)
    sigma = ((1 - abar) / abar).sqrt()
    torch.testing.assert_close(denoiser(x0 + sigma * eps, sigma.flatten()), x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_beta_schedules_equal_diffusers(schedule):
    scheduler = diffusers.DDPMScheduler(beta_schedule=schedule, beta_start=0.00085, beta_end=0.012)
    ours = discrete_alphas_cumprod(schedule, 1000, 0.00085, 0.012)
    torch.testing.assert_close(ours.float(), scheduler.alphas_cumprod, atol=1e-5, rtol=1e-4)


def test_a_diffusers_unet_runs_a_suite_and_its_weights_hash_is_the_checkpoint(write_suite, tmp_path):
    folder = save_unet(tmp_path / "my-unet")
    suite = external_suite(write_suite, "diffusers", folder)
    run_suite(load_suite(str(suite)), tmp_path / "results")
    (row,), _ = ResultStore(tmp_path / "results", "tiny").read()
    weights = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    assert row["status"] == "ok" and row["nfe"] == 3
    assert row["model"]["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    assert row["model"]["recipe"] == "diffusers:my-unet"


def test_changing_the_weights_reruns_the_cells(write_suite, tmp_path):
    folder = save_unet(tmp_path / "my-unet")
    suite = external_suite(write_suite, "diffusers", folder)
    run_suite(load_suite(str(suite)), tmp_path / "results")
    save_unet(folder, seed=1)
    outcome = run_suite(load_suite(str(suite)), tmp_path / "results")
    assert outcome.rows_written == 1 and outcome.cells_skipped == 0


def test_the_scheduler_config_beside_the_unet_sets_the_schedule(write_suite, tmp_path):
    save_unet(tmp_path / "pipe" / "unet")
    diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                            num_train_timesteps=500).save_pretrained(tmp_path / "pipe" / "scheduler")
    config = load_suite(str(external_suite(write_suite, "diffusers", tmp_path / "pipe")))
    model = load_models(config, load_dataset(config.dataset), torch.device("cpu"))[0]["eps"]
    assert model.denoiser.prediction == "v_prediction" and len(model.denoiser.sigmas) == 500
    expected = discrete_alphas_cumprod("squaredcos_cap_v2", 500)
    torch.testing.assert_close(model.denoiser.sigmas, ((1 - expected) / expected).sqrt().float())


def test_the_projects_own_unet_through_a_factory_reproduces_the_built_in_fid(write_suite, tmp_path):
    builtin = load_suite(str(write_suite(TINY_SUITE.replace('method = "ddpm"\nsteps = [2, 4]',
                                                            'method = "ddim"\nsteps = [5]'))))
    run_suite(builtin, tmp_path / "builtin")
    trained = load_models(builtin, load_dataset(builtin.dataset), torch.device("cpu"))[0]["eps"]
    (tmp_path / "factory.py").write_text(textwrap.dedent(FACTORY))
    network = {k: v for k, v in trained.meta["network"].items() if k != "channel_mult"}
    extra = (f'factory = "{tmp_path / "factory.py"}:make_network"\nparameterization = "eps"\n'
             f"factory_args = {{ channel_mult = {list(trained.meta['network']['channel_mult'])}, "
             + ", ".join(f"{k} = {json.dumps(v)}" for k, v in network.items()) + " }")
    external = load_suite(str(external_suite(write_suite, "safetensors", trained.path, extra, "exported")))
    run_suite(external, tmp_path / "exported")
    ours = {r["steps"]: r for r in ResultStore(tmp_path / "builtin", "tiny").read()[0]}
    theirs = ResultStore(tmp_path / "exported", "exported").read()[0]
    assert theirs[0]["metrics"]["fid"]["value"] == ours[3]["metrics"]["fid"]["value"]
    assert theirs[0]["model"]["checkpoint_sha256"] == trained.checkpoint_sha256


def write_pickle(path):
    path.write_bytes(pickle.dumps({"weight": [1.0]}))
    return path


def write_garbage(path):
    path.write_bytes(b"garbage")
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: write_pickle(tmp / "net.pkl"), "is a pickle"),
    (lambda tmp: write_pickle(tmp / "net.pt"), "weights_only=True"),
    (lambda tmp: write_garbage(tmp / "net.safetensors"), "not a readable safetensors file"),
])
def test_files_that_need_unpickling_or_are_damaged_are_refused(capsys, write_suite, tmp_path, make, message):
    (tmp_path / "factory.py").write_text(textwrap.dedent(FACTORY))
    extra = f'factory = "{tmp_path / "factory.py"}:make_network"\nparameterization = "eps"'
    suite = external_suite(write_suite, "safetensors", make(tmp_path), extra)
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "r" / "tiny" / "rows.jsonl").exists()


def test_a_diffusers_folder_with_only_pickled_weights_is_refused(capsys, write_suite, tmp_path):
    folder = save_unet(tmp_path / "my-unet")
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model.bin")
    code, _, err = run_cli(capsys, "run", str(external_suite(write_suite, "diffusers", folder)),
                           "--results-dir", str(tmp_path / "r"))
    assert code == 2 and "safe_serialization=True" in one_line_error(err)


@pytest.mark.parametrize("channels, message", [({"in_channels": 3}, "does not run on dataset"),
                                              ({"out_channels": 3}, "returns (3, 8, 8)")])
def test_a_model_that_does_not_fit_the_dataset_is_exit_2_naming_the_file(capsys, write_suite, tmp_path,
                                                                        channels, message):
    folder = save_unet(tmp_path / "rgb-unet", **channels)
    code, _, err = run_cli(capsys, "run", str(external_suite(write_suite, "diffusers", folder)),
                           "--results-dir", str(tmp_path / "r"))
    line = one_line_error(err)
    assert code == 2 and message in line and "diffusion_pytorch_model.safetensors" in line


@pytest.mark.parametrize("extra, message", [
    ('prediction_type = "score"', "prediction_type must be one of"),
    ("beta_end = 2.0", "beta_end must be between"),
    ("num_classes = 3", "num_classes = 3 but dataset"),
    ("colour = 1", "unknown key 'colour'"),
])
def test_bad_external_model_keys_are_exit_2(capsys, write_suite, tmp_path, extra, message):
    folder = save_unet(tmp_path / "my-unet")
    code, _, err = run_cli(capsys, "run", str(external_suite(write_suite, "diffusers", folder, extra)),
                           "--results-dir", str(tmp_path / "r"))
    assert code == 2 and message in one_line_error(err)


def test_a_discrete_method_on_an_edm_model_is_exit_2(capsys, write_suite, tmp_path):
    (tmp_path / "factory.py").write_text(textwrap.dedent(FACTORY))
    from safetensors.torch import save_file

    from methods import UNet, UNetConfig
    save_file(UNet(UNetConfig(image_size=8)).state_dict(), tmp_path / "net.safetensors")
    extra = f'factory = "{tmp_path / "factory.py"}:make_network"\nparameterization = "edm"'
    suite = external_suite(write_suite, "safetensors", tmp_path / "net.safetensors", extra)
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and "method 'ddim' cannot schedule" in one_line_error(err)
