"""Classifier guidance: Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis",
Sec. 4 and Algorithms 1-2.

A classifier p_phi(y | x; sigma) trained on noisy images steers an unconditional model toward
class y by adding its log-probability gradient to the score:
    grad log p(x | y; sigma) ~ grad log p(x; sigma) + s grad_x log p_phi(y | x; sigma).
With the score (D - x) / sigma^2 of a Denoiser, the guided denoiser is
    D_s(x; sigma) = D(x; sigma) + s sigma^2 grad_x log p_phi(y | x; sigma),
which serves every sampler (Algorithm 1's shifted DDPM mean and Algorithm 2's DDIM eps are
this score, written in their own variables). s = `guidance_scale`; s = 0 is the unguided sampler,
and the classifier is then never called.

The classifier (`NoiseAwareClassifier`) is a LeNet that sees c_in x (EDM's input scaling, so
every noise level reaches it at unit variance) and log(sigma) as an extra input channel, trained
with cross-entropy on x0 + sigma n with EDM's log-normal sigma (`classifier_loss`).
"""
import torch
import torch.nn.functional as F
from torch import nn

from methods.base import METHODS, register_variant
from methods.denoisers import inherit_sigma_range
from methods.edm import P_MEAN, P_STD, SIGMA_DATA


class NoiseAwareClassifier(nn.Module):
    """logits of p(y | x; sigma) for x = x0 + sigma n."""

    def __init__(self, in_channels: int, num_classes: int, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.sigma_data, self.num_classes = sigma_data, num_classes
        self.conv1 = nn.Conv2d(in_channels + 1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(64 * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, *x.shape[2:])
        c_in = 1 / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        h = torch.cat([c_in * x, sigma.log() / 4], dim=1)
        h = F.max_pool2d(F.silu(self.conv1(h)), 2, ceil_mode=True)
        h = F.max_pool2d(F.silu(self.conv2(h)), 2, ceil_mode=True)
        return self.fc2(F.silu(self.fc1(self.pool(h).flatten(1))))


def training_sigmas(count: int, generator, device=None) -> torch.Tensor:
    """EDM's log-normal training noise levels (Karras et al. 2022, Table 1)."""
    return (torch.randn(count, generator=generator, device=device) * P_STD + P_MEAN).exp()


def classifier_loss(classifier, x0, labels, generator):
    """Cross-entropy of the true class on x0 + sigma n."""
    sigma = training_sigmas(x0.shape[0], generator, x0.device)
    noisy = x0 + torch.randn(x0.shape, generator=generator, device=x0.device) * sigma.reshape(-1, 1, 1, 1)
    return F.cross_entropy(classifier(noisy, sigma), labels)


def log_prob_gradient(classifier, x, sigma, labels):
    """grad_x log p_phi(y | x; sigma) for each sample's requested class y (Algorithm 1's
    grad log p_phi(y | x_t)); `sigma` is a scalar or one value per sample."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    with torch.enable_grad():
        probe = x.detach().requires_grad_(True)
        log_probs = F.log_softmax(classifier(probe, sigma.expand(x.shape[0], 1, 1, 1)), dim=1)
        chosen = log_probs[torch.arange(x.shape[0], device=x.device), labels].sum()
        return torch.autograd.grad(chosen, probe)[0]


class ClassifierGuidance(nn.Module):
    """D_s(x; sigma) = D(x; sigma) + s sigma^2 grad_x log p(y | x; sigma), y = cond['labels'];
    `gradient(x, sigma, labels)` gives grad_x log p (`log_prob_gradient` of a classifier, or a
    wrapper that also counts and times it)."""

    def __init__(self, denoiser: nn.Module, gradient, guidance_scale: float):
        super().__init__()
        self.inner, self.gradient, self.guidance_scale = denoiser, gradient, guidance_scale
        inherit_sigma_range(self, denoiser)

    def forward(self, x, sigma, cond=None):
        labels = (cond or {}).get("labels")
        if labels is None:
            raise ValueError("classifier guidance needs the requested classes in cond['labels']")
        unlabelled = {k: v for k, v in cond.items() if k not in ("labels", "classifier_gradient")}
        denoised = self.inner(x, sigma, unlabelled or None)   # the unconditional model
        if self.guidance_scale == 0:
            return denoised
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return denoised + self.guidance_scale * sigma ** 2 * self.gradient(x, sigma, labels)


def classifier_guidance(denoiser, guidance_scale, cond):
    """The guided denoiser, from the gradient the runner puts in cond['classifier_gradient']."""
    if cond is None or cond.get("classifier_gradient") is None:
        raise ValueError("classifier guidance needs a noise-aware classifier's gradient in "
                         "cond['classifier_gradient']")
    return ClassifierGuidance(denoiser, cond["classifier_gradient"], guidance_scale)


for _name in ("ddpm", "ddim", "edm-heun", "edm-stochastic", "edm-euler-ancestral", "flow-euler",
              "flow-heun", "sde-euler-maruyama", "sde-pc"):
    # `<base>-cg`: the base method on its unconditional model, steered by the classifier
    register_variant(_name, suffix="-cg", model=METHODS.get(_name).model, scale="guidance_scale",
                     limit=(0.0, 1000.0), note="classifier guidance (Dhariwal & Nichol 2021)",
                     wrap=classifier_guidance, classifier=True)
