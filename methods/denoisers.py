"""Denoiser wrappers: D(x, sigma, cond=None) -> x0_hat, with x = x0 + sigma * n (EDM's form).

Each wrapper only converts a network's parameterisation into a denoised estimate.
`cond` is a dict that may hold "labels" (class indices) and "lowres" (the upsampled LR image).
"""
import torch
from torch import nn

SIGMA_ATTRIBUTES = ("sigma_min", "sigma_max", "sigma_data", "sigmas")


def inherit_sigma_range(wrapper: nn.Module, denoiser: nn.Module) -> None:
    """A wrapper around a Denoiser exposes the same noise range (and training sigmas, if any)."""
    for attribute in SIGMA_ATTRIBUTES:
        if hasattr(denoiser, attribute):
            setattr(wrapper, attribute, getattr(denoiser, attribute))


def _expand(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)


def _net_kwargs(cond: dict | None) -> dict:
    cond = cond or {}
    return {"class_labels": cond.get("labels"), "cond_image": cond.get("lowres")}


class DiscreteVPDenoiser(nn.Module):
    """A network trained on discrete VP timesteps (DDPM; diffusers' schedulers), seen as a
    Denoiser. It predicts eps (Ho et al. 2020), v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans &
    Ho 2022) or x0 itself ("sample", diffusers' name).

    With alpha_bar_t the training schedule, sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) and the
    VP input is x / sqrt(1 + sigma^2) = c_in x. A sigma between two training sigmas maps to a
    fractional timestep by interpolating log-sigma (as k-diffusion does).
    """
    PREDICTIONS = ("epsilon", "v_prediction", "sample")

    def __init__(self, net: nn.Module, alphas_cumprod: torch.Tensor, prediction: str = "epsilon"):
        super().__init__()
        if prediction not in self.PREDICTIONS:
            raise ValueError(f"prediction must be one of {self.PREDICTIONS}, got {prediction!r}")
        self.net, self.prediction = net, prediction
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.register_buffer("log_sigmas", sigmas.log().float(), persistent=False)
        self.sigma_min, self.sigma_max = float(sigmas[0]), float(sigmas[-1])
        self.sigma_data = 1.0

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigma = sigma.float().log().clamp(self.log_sigmas[0], self.log_sigmas[-1])
        high = torch.searchsorted(self.log_sigmas, log_sigma).clamp(1, len(self.log_sigmas) - 1)
        low = high - 1
        frac = (log_sigma - self.log_sigmas[low]) / (self.log_sigmas[high] - self.log_sigmas[low])
        return low + frac.clamp(0, 1)

    def forward(self, x: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        sigma = _expand(sigma, x)
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        t = self.sigma_to_t(sigma.flatten())
        out = self.net(x * c_in, t, **_net_kwargs(cond)).to(x.dtype)
        if self.prediction == "epsilon":
            return x - sigma * out
        if self.prediction == "v_prediction":   # x0 = sqrt(abar) x_vp - sqrt(1 - abar) v
            return c_in ** 2 * x - sigma * c_in * out
        return out


class EDMPrecond(nn.Module):
    """Karras et al. 2022 ("EDM"), Table 1 preconditioning:
    D(x, sigma) = c_skip x + c_out F(c_in x, c_noise), with
    c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2),
    c_in = 1 / sqrt(sigma^2 + s_d^2), c_noise = ln(sigma) / 4."""

    def __init__(self, net: nn.Module, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data

    def forward(self, x: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        sigma = _expand(sigma, x)
        s_d = self.sigma_data
        c_skip = s_d ** 2 / (sigma ** 2 + s_d ** 2)
        c_out = sigma * s_d / (sigma ** 2 + s_d ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + s_d ** 2).sqrt()
        c_noise = sigma.flatten().log() / 4
        out = self.net(x * c_in, c_noise, **_net_kwargs(cond))
        return c_skip * x + c_out * out.to(x.dtype)


class FlowVelocityDenoiser(nn.Module):
    """A velocity network on the linear path x_t = (1 - t) x0 + t n (t = 0 data, t = 1 noise;
    dx_t/dt = n - x0), seen as a Denoiser: sigma = t / (1 - t), x_t = x / (1 + sigma) and
    x0_hat = x_t - t v(x_t, t). The network sees time_scale t (1000: the DDPM timestep scale)."""

    def __init__(self, net: nn.Module, sigma_min: float = 1e-4, sigma_max: float = 1e4,
                 time_scale: float = 1000.0):
        super().__init__()
        self.net, self.time_scale = net, time_scale
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, 1.0

    def forward(self, x: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        sigma = _expand(sigma, x)
        t = sigma / (1 + sigma)
        x_t = x / (1 + sigma)
        velocity = self.net(x_t, self.time_scale * t.flatten(), **_net_kwargs(cond))
        return x_t - t * velocity.to(x.dtype)
