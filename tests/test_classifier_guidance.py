"""Classifier guidance on a two-Gaussian mixture, where the denoiser and the noisy classifier are
exact: with scale 1 the guided score is the class-conditional score, so sampling must return
the requested component; with scale 0 it is the unguided sampler, bit for bit."""
import functools

import pytest
import torch

from methods import METHODS, PerSampleRNG
from methods.classifier_guidance import (ClassifierGuidance, NoiseAwareClassifier, classifier_loss,
                                         log_prob_gradient)

SHAPE = (1, 4, 4)
MEANS = (-1.0, 1.0)     # component k: N(MEANS[k], S^2 I), equal weights
S = 0.3


def responsibilities(x, sigma):
    """p(k | x; sigma) for x = x0 + sigma n: each component widened to S^2 + sigma^2."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
    variance = S ** 2 + sigma ** 2
    log_likelihood = torch.stack([-((x - m) ** 2 / (2 * variance)).flatten(1).sum(1) for m in MEANS], 1)
    return log_likelihood.log_softmax(1)


class MixtureDenoiser(torch.nn.Module):
    """E[x0 | x; sigma] of the mixture: the responsibilities' average of the components' own."""
    sigma_min, sigma_max, sigma_data = 0.002, 80.0, 1.0

    def forward(self, x, sigma, cond=None):
        weights = responsibilities(x, sigma).exp()
        s2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1) ** 2
        means = [m + S ** 2 / (S ** 2 + s2) * (x - m) for m in MEANS]
        return sum(weights[:, k].reshape(-1, 1, 1, 1) * means[k] for k in range(len(MEANS)))


class ExactClassifier(torch.nn.Module):
    num_classes = len(MEANS)

    def forward(self, x, sigma):
        return responsibilities(x, sigma)


def guided_samples(name, scale, labels, steps=40, **hparams):
    method = METHODS.get(name)
    rng = PerSampleRNG(0, range(len(labels)))
    cond = {"labels": torch.as_tensor(labels),
            "classifier_gradient": functools.partial(log_prob_gradient, ExactClassifier())}
    return method.sample(MixtureDenoiser(), rng.randn(SHAPE), steps, rng=rng, cond=cond,
                         **method.resolve_hparams({"guidance_scale": scale, **hparams}))


@pytest.mark.parametrize("name", ["edm-heun-cg", "sde-euler-maruyama-cg"])
@pytest.mark.parametrize("label", [0, 1])
def test_scale_one_with_the_exact_classifier_samples_the_requested_component(name, label):
    out = guided_samples(name, 1.0, [label] * 600, steps=40 if name == "edm-heun-cg" else 400)
    assert float(out.mean()) == pytest.approx(MEANS[label], abs=0.02)
    assert float(out.std()) == pytest.approx(S, abs=0.02)


def test_scale_zero_equals_the_unguided_sampler_exactly():
    unguided = METHODS.get("edm-heun")
    rng = PerSampleRNG(0, range(64))
    expected = unguided.sample(MixtureDenoiser(), rng.randn(SHAPE), 40, rng=rng,
                               **unguided.resolve_hparams({}))
    assert torch.equal(guided_samples("edm-heun-cg", 0.0, [1] * 64), expected)


def test_unguided_mixture_samples_fall_in_both_components():
    out = guided_samples("edm-heun-cg", 0.0, [0] * 600).flatten(1).mean(1)
    assert 0.35 < float((out > 0).float().mean()) < 0.65


def test_a_larger_scale_sharpens_the_requested_component():
    """s > 1 is sampling from p(x) p(y | x)^s: the component's tail toward the other one
    thins, so its spread shrinks below S."""
    out = guided_samples("edm-heun-cg", 4.0, [1] * 600)
    assert float(out.mean()) > MEANS[1] - 0.02 and float(out.std()) < S


def test_the_guided_denoiser_adds_scale_sigma_squared_times_the_classifier_gradient():
    x = PerSampleRNG(1, range(3)).randn(SHAPE)
    labels = torch.tensor([0, 1, 1])
    gradient = functools.partial(log_prob_gradient, ExactClassifier())
    guided = ClassifierGuidance(MixtureDenoiser(), gradient, 2.5)(x, 0.8, {"labels": labels})
    probe = x.clone().requires_grad_(True)
    chosen = responsibilities(probe, 0.8)[torch.arange(3), labels].sum()
    grad = torch.autograd.grad(chosen, probe)[0]
    torch.testing.assert_close(guided, MixtureDenoiser()(x, 0.8) + 2.5 * 0.64 * grad)


def test_guidance_without_labels_is_refused():
    with pytest.raises(ValueError, match="labels"):
        ClassifierGuidance(MixtureDenoiser(), None, 1.0)(torch.zeros(2, *SHAPE), 1.0, {})


def test_the_noise_aware_classifier_learns_a_noisy_two_class_problem():
    """A few hundred steps on the mixture's samples: accuracy near the Bayes rate at a low and a
    moderate noise level (the network sees sigma, so one set of weights serves both)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (512,), generator=generator)
    x0 = torch.tensor(MEANS)[labels].reshape(-1, 1, 1, 1) + S * torch.randn(512, *SHAPE, generator=generator)
    net = NoiseAwareClassifier(1, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        classifier_loss(net, x0, labels, generator).backward()
        optimizer.step()
    for sigma in (0.1, 2.0):
        noisy = x0 + sigma * torch.randn(x0.shape, generator=generator)
        accuracy = float((net(noisy, torch.full((512,), sigma)).argmax(1) == labels).float().mean())
        bayes = float((responsibilities(noisy, sigma).argmax(1) == labels).float().mean())
        assert accuracy > bayes - 0.05, sigma
