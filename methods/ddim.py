"""DDIM: Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models".

Sampling: the generalised reverse step of Eq. 12 with sigma_t(eta) of Eq. 16, over a subsequence
of the DDPM training timesteps (Sec. 4.2). eta = 0 is the deterministic DDIM; eta = 1 gives the
DDPM posterior variance. Uses the same eps-network as `ddpm`; `clip_denoised` as in `ddpm`
(clipping the predicted x0, the "predicted x0" term of Eq. 12, to [-1, 1]).

Notation (code | paper): a_t, a_s | alpha_t and alpha_{t-1} of Eq. 12 (the DDIM paper's alpha is
DDPM's alpha-bar); x0 | the "predicted x0" f_theta(x_t); eps | eps_theta(x_t); sigma_t | Eq. 16's
sigma_t(eta). tests/test_samplers.py checks eta = 1 against the DDPM posterior variance and
tests/test_diffusers_parity.py the whole sampler against diffusers' DDIMScheduler.
"""
import torch

from methods.base import register_method
from methods.ddpm import NUM_TRAIN_STEPS, alpha_bar, predict_x0_eps, respaced_sigmas


@torch.no_grad()
def sample_ddim(denoiser, x, sigmas, *, rng, cond=None, callback=None, eta=0.0,
                clip_denoised=True):
    """DDIM sampling (Song et al. 2020, Eq. 12) with stochasticity eta (Eq. 16)."""
    for i in range(len(sigmas) - 1):
        a_t, a_s = alpha_bar(sigmas[i]), alpha_bar(sigmas[i + 1])
        x0, eps = predict_x0_eps(denoiser, x, a_t.to(x.dtype), sigmas[i], cond)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
            eps = (x - a_t.sqrt().to(x.dtype) * x0) / (1 - a_t).sqrt().to(x.dtype)
        sigma_t = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
        # "predicted x0" + "direction pointing to x_t" + random noise (Eq. 12).
        x = a_s.sqrt().to(x.dtype) * x0 + (1 - a_s - sigma_t ** 2).sqrt().to(x.dtype) * eps
        if sigma_t > 0:
            x = x + sigma_t.to(x.dtype) * rng.randn_like(x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": x0})
    return x


register_method(
    name="ddim", family="ddim", task="generate", model="eps", sampler=sample_ddim,
    schedule=respaced_sigmas, version="1", max_steps=NUM_TRAIN_STEPS, limits={"eta": (0.0, 1.0)},
    start="vp", paper="Song et al. 2020, Eq. 12 and 16")
