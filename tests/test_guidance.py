import pytest
import torch

from bench.run.cost import CountingDenoiser
from methods import METHODS, PerSampleRNG
from methods.guidance import ClassifierFreeGuidance


class LabelShift(torch.nn.Module):
    """D(x | c) = c (the label as a constant image); the null label gives 0."""
    sigma_min, sigma_max, sigma_data = 0.002, 80.0, 0.5

    def forward(self, x, sigma, cond=None):
        labels = cond["labels"].float()
        labels = torch.where(cond["labels"] == cond["null_label"], 0.0, labels)
        return labels.reshape(-1, 1, 1, 1).expand_as(x)


def cond_for(labels):
    return {"labels": torch.tensor(labels), "null_label": 10}


@pytest.mark.parametrize("scale, expected", [(1.0, 2.0), (3.0, 6.0), (0.0, 0.0)])
def test_guidance_extrapolates_from_unconditional_to_conditional(scale, expected):
    guided = ClassifierFreeGuidance(LabelShift(), scale)
    out = guided(torch.zeros(2, 1, 2, 2), torch.tensor(1.0), cond_for([2, 2]))
    torch.testing.assert_close(out, torch.full_like(out, expected))


@pytest.mark.parametrize("scale, evaluations", [(1.0, 1), (2.0, 2)])
def test_guidance_costs_two_evaluations_unless_scale_is_one(scale, evaluations):
    counter = CountingDenoiser(LabelShift())
    ClassifierFreeGuidance(counter, scale)(torch.zeros(4, 1, 2, 2), torch.tensor(1.0), cond_for([1, 2, 3, 4]))
    assert counter.calls == 1 and counter.nfe(4) == evaluations


def test_guidance_without_labels_is_an_error():
    with pytest.raises(ValueError, match="class labels"):
        ClassifierFreeGuidance(LabelShift(), 2.0)(torch.zeros(1, 1, 2, 2), 1.0, None)


def test_guided_method_adds_cfg_scale_to_the_base_defaults():
    base, guided = METHODS.get("edm-heun"), METHODS.get("edm-heun-cfg")
    assert dict(guided.defaults) == {**base.defaults, "cfg_scale": 1.0}
    assert guided.model == "edm-cond"


def test_guided_sampler_at_scale_one_equals_the_conditional_sampler():
    rng_a, rng_b = PerSampleRNG(0, range(3)), PerSampleRNG(0, range(3))
    latents = rng_a.randn((1, 2, 2))
    rng_b.randn((1, 2, 2))
    cond = cond_for([1, 2, 3])
    plain = METHODS.get("edm-euler-ancestral").sample(LabelShift(), latents, 4, rng=rng_a, cond=cond)
    guided = METHODS.get("edm-euler-ancestral-cfg").sample(LabelShift(), latents, 4, rng=rng_b, cond=cond,
                                                           cfg_scale=1.0)
    torch.testing.assert_close(plain, guided, rtol=0, atol=0)
