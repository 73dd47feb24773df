"""Every number a suite can hold is checked before any work: a bad one is exit 2 with one line
naming the key, and no results folder, model or cache entry is made."""
import pytest

from bench.cli import main
from tests.helpers import TINY_SUITE

MODEL = ("checkpoint_every = 10", "checkpoint_every = 10\n{}")
SUITE = ("grid_size = 16", "grid_size = 16\n{}")
DDIM = ('method = "ddim"', 'method = "ddim"\n{}')


def edit(where, text):
    return where[0], where[1].format(text)


@pytest.mark.parametrize("change, named", [
    (edit(MODEL, "lr = nan"), "'lr' must be a finite number"),
    (edit(MODEL, "lr = -1.0"), "'lr' must be between"),
    (edit(MODEL, "dropout = 2.0"), "'dropout' must be between 0.0 and 0.99"),
    (("base_channels = 8", "base_channels = 0"), "'base_channels' must be between 1"),
    (("base_channels = 8", "base_channels = 12"), "cannot be built (num_channels (12) must be divisible"),
    (edit(MODEL, "channel_mult = [1, 0]"), "channel_mult must be a non-empty list of integers"),
    (("checkpoint_every = 10", "checkpoint_every = 0"), "'checkpoint_every' must be between 1"),
    (("steps = 20", "steps = -20"), "model key 'steps' must be between 0"),
    (edit(MODEL, "batch_size = 0"), "'batch_size' must be between 1"),
    (edit(MODEL, "warmup_steps = -5"), "'warmup_steps' must be between 0"),
    (edit(MODEL, 'precision = "fp16"'), "'precision' must be one of auto, fp32, bf16"),
    (edit(MODEL, "bf16 = true"), "unknown model key 'bf16'"),
    (edit(SUITE, 'device = "bogus"'), "device must be \"cpu\", \"cuda\", \"cuda:N\" or \"auto\""),
    (edit(SUITE, "warmup_batches = -1"), "warmup_batches must be between 0"),
    (("n_samples = 24", "n_samples = 1000000000000"), "n_samples must be between 1 and 10000000"),
    (edit(SUITE, "seed = -3"), "seed must be between 0"),
    (edit(DDIM, "hparams = { eta = nan }"), "'eta' must be a finite number, got nan"),
    (edit(DDIM, "hparams = { eta = inf }"), "'eta' must be a finite number, got inf"),
    (edit(DDIM, "hparams = { eta = 1.5 }"), "'eta' must be between 0.0 and 1.0"),
    (("steps = [2, 4]", "steps = [2, 5000]"), "method 'ddpm': steps must be between 1 and 1000"),
    (('method = "ddpm"', 'method = "ddpm"\nhparams = { variance = "huge" }'), "'variance' must be one of"),
])
def test_a_bad_value_exits_2_naming_it_before_any_work(capsys, write_suite, tmp_path, change, named):
    path = write_suite(TINY_SUITE.replace(*change, 1))
    code = main(["run", str(path), "--results-dir", str(tmp_path / "r"),
                 "--reports-dir", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "rep").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_exits_2_before_training(capsys, write_suite, tmp_path):
    path = write_suite(TINY_SUITE.replace(*edit(SUITE, 'device = "cuda"'), 1))
    code = main(["run", str(path), "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "torch sees 0 CUDA device(s)" in err and not (tmp_path / "r").exists()
