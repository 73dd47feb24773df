"""The tasks a method can do, and what the harness hands it and measures for each.

Generation starts from noise alone. The other tasks start from an input made from the first
`n_samples` test images (sample i gets test image i), so every method of a task edits the same
images:
- `superres`: the image downsampled (`bench.data.degradation`); methods see it upsampled in
  cond["lowres"]; PSNR / SSIM against the HR image, LR-consistency.
- `img2img`: a coarse guide of the image (a "sketch": 4x4 block means, 4 grey levels per
  channel), the kind of unrealistic input SDEdit turns into a realistic image; cond["source"];
  faithfulness as PSNR / SSIM against the guide, realism as FID.
- `inpaint`: the image with a hole (`mask`: the centre square of half the side, the right half,
  or seeded random brush strokes); cond["source"] and cond["mask"] (1 = known); PSNR / SSIM of
  the hole against the original, the largest change in the known region (must be 0), FID.
- `train-curve`: generation from the EMA weights after a chosen training step (the cell's
  `train_step`), scored as generation; rows carry the training seconds and images seen.
- `anagram`: generation from noise by a composition of two classes' estimates (an anagram, a
  hybrid image: `methods.composition`); the domain classifier (LeNet) reads each image in both
  of the method's views (view_a_acc, view_b_acc, both_acc), FID scores the sample and, for an
  anagram, its transformed view too (fid_view_b).
FID compares with the whole test split for super-resolution (as published) and with the suite's
reference split for the others (their outputs must not be compared with their own sources).
"""
import dataclasses

import numpy as np
import torch

from bench.data.degradation import (DEGRADATION, MASK_SEED, MASKS, SKETCH_BLOCK, SKETCH_LEVELS,
                                    check_scale, condition_of, inpaint_masks, lowres_of, sketch_of)
from bench.data.quantize import to_uint8
from bench.quality.fidelity import (ROUNDING_NOISE_PSNR, fidelity_convention, known_error_per_image,
                                    lr_mse_per_image, psnr_per_image, ssim_per_image)
from methods.base import PerSampleRNG
from methods.denoising import ddpm_sigma
from methods.errors import DiffbenchError

NOISE_SEED = 20200619           # the denoising inputs' noise: per test image, never the cell's seed
HELDOUT_NOISE_SEED = 20200620   # the held-out pairs' noise, per training image
HELDOUT_IMAGES = 500


@dataclasses.dataclass(frozen=True)
class TaskInputs:
    """What a batch of a task starts from (images in [-1, 1])."""
    original: torch.Tensor            # the test images
    given: torch.Tensor               # what the method is given: LR, guide or image with a hole
    cond: dict                        # what the sampler receives
    mask: torch.Tensor | None = None  # inpainting: 1 where known


@dataclasses.dataclass(frozen=True)
class Task:
    """A task as one cell runs it: `name` and, for inpainting, the mask, for denoising the
    DDPM timestep of the inputs' noise."""
    name: str
    mask: str = ""
    t: int = 0

    @property
    def key(self) -> str:
        """Which cells share a protocol and a reference."""
        return f"{self.name}:{self.mask}" if self.mask else f"{self.name}:t{self.t}" if self.t else self.name

    @property
    def sigma(self) -> float:
        """A denoising task's noise level."""
        return ddpm_sigma(self.t)

    @property
    def has_inputs(self) -> bool:
        return self.name not in ("generate", "anagram", "train-curve")

    def reference_split(self, config) -> str:
        return "test" if self.name == "superres" else config.reference_split

    def uses_statistics_file(self, config) -> bool:
        """Compared with the suite's `reference_stats` file rather than a dataset split (every
        task but super-resolution, when the suite gives one)."""
        return self.name != "superres" and bool(config.reference_stats)

    def metrics(self) -> tuple[str, ...]:
        """The per-image metrics the task always computes."""
        return {"superres": ("psnr", "ssim", "lr_mse"), "img2img": ("psnr", "ssim"),
                "denoise": ("psnr", "ssim"), "anagram": ("view_a_acc", "view_b_acc", "both_acc"),
                "inpaint": ("psnr", "ssim", "known_error")}.get(self.name, ())

    def check(self, config, dataset) -> None:
        if self.name == "superres":
            check_scale(dataset.shape, config.superres_scale, config.path)
        if self.name == "img2img" and (dataset.shape[1] % SKETCH_BLOCK or dataset.shape[2] % SKETCH_BLOCK):
            raise DiffbenchError(f"{config.path}: img2img needs image sides divisible by "
                                 f"{SKETCH_BLOCK} (the guide's blocks); pick another dataset")
        if self.has_inputs and config.n_samples > len(dataset.test_index):
            raise DiffbenchError(f"{config.path}: n_samples {config.n_samples} exceeds the "
                                 f"{len(dataset.test_index)} test images {self.name} runs on; "
                                 "lower n_samples")

    def protocol(self, config, dataset) -> dict:
        """The task's part of the metric protocol (none for generation)."""
        if self.name == "anagram":
            return {"anagram": {"reader": "the suite's domain extractor's classifier (argmax of "
                                "its logits)", "views": "anagram: a as sampled, b through its "
                                "view; hybrid: a low-passed by its lowpass_sigma (from afar), b as "
                                "sampled (up close)", "fid": "the sample as generated; "
                                "fid_view_b: an anagram's transformed view, same reference"}}
        inputs = "test split, first n_samples"
        if self.name == "superres":
            return {"superres": {"scale": config.superres_scale, "degradation": DEGRADATION,
                                 "inputs": inputs,
                                 "fidelity": fidelity_convention(dataset.shape[0], config.superres_scale)}}
        fidelity = fidelity_convention(dataset.shape[0], 0)
        if self.name == "img2img":
            return {"img2img": {"guide": f"{SKETCH_BLOCK}x{SKETCH_BLOCK} block means, "
                                f"{SKETCH_LEVELS} levels per channel", "inputs": inputs,
                                "fidelity": {**fidelity, "against": "the guide"}}}
        if self.name == "inpaint":
            return {"inpaint": {"mask": self.mask, "hole": MASKS[self.mask], "inputs": inputs,
                                "mask_seed": MASK_SEED,
                                "fidelity": {**fidelity, "against": "the original, hole pixels only",
                                             "psnr_cap": f"{ROUNDING_NOISE_PSNR:.2f} dB per image (the "
                                             "PSNR of uint8 rounding noise): an exactly reproduced "
                                             "hole counts at it, not at infinity",
                                             "known_error": "largest |output - input| on known "
                                             "pixels, grey levels, over every image"}}}
        if self.name == "denoise":
            return {"denoise": {"t": self.t, "sigma": self.sigma,
                                "noise": "y = x0 + sigma n, sigma = sqrt((1 - abar_t) / abar_t) on "
                                "DDPM's linear schedule (beta 1e-4..0.02, T = 1000, t in 1..T)",
                                "noise_seed": NOISE_SEED, "inputs": inputs,
                                "heldout": f"first {HELDOUT_IMAGES} training images, noise seed "
                                f"{HELDOUT_NOISE_SEED} (for methods tuned on held-out pairs)",
                                "fidelity": {**fidelity, "against": "the clean image"}}}
        return {}

    def inputs(self, config, dataset, indices) -> TaskInputs | None:
        if not self.has_inputs:
            return None
        original = dataset.split("test")[0][list(indices)]
        if self.name == "superres":
            lowres = lowres_of(original, config.superres_scale)
            return TaskInputs(original, lowres, {"lowres": condition_of(lowres, config.superres_scale)})
        if self.name == "img2img":
            guide = sketch_of(original)
            return TaskInputs(original, guide, {"source": guide})
        if self.name == "denoise":
            noisy = noised(original, self.sigma, NOISE_SEED, indices)
            return TaskInputs(original, noisy, {"source": noisy})
        mask = inpaint_masks(self.mask, original.shape[1:], indices)
        return TaskInputs(original, original * mask, {"source": original, "mask": mask}, mask)

    def heldout(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoising's held-out (noisy, clean) pairs, for a method that tunes on them."""
        clean = dataset.split("train")[0][:HELDOUT_IMAGES]
        return noised(clean, self.sigma, HELDOUT_NOISE_SEED, range(len(clean))), clean

    def per_image(self, pixels: torch.Tensor, inputs: TaskInputs, scale: int) -> dict[str, np.ndarray]:
        """Each output's fidelity metrics (pixels: the uint8 outputs)."""
        if self.name == "superres":
            target = to_uint8(inputs.original)
            return {"psnr": psnr_per_image(pixels, target, scale),
                    "ssim": ssim_per_image(pixels, target, scale),
                    "lr_mse": lr_mse_per_image(pixels, inputs.given, scale)}
        if self.name in ("img2img", "denoise"):
            target = to_uint8(inputs.given if self.name == "img2img" else inputs.original)
            return {"psnr": psnr_per_image(pixels, target, 0), "ssim": ssim_per_image(pixels, target, 0)}
        if self.name == "inpaint":
            original, hole = to_uint8(inputs.original), inputs.mask[:, 0] == 0
            return {"psnr": np.minimum(psnr_per_image(pixels, original, 0, hole), ROUNDING_NOISE_PSNR),
                    "ssim": ssim_per_image(pixels, original, 0, hole),
                    "known_error": known_error_per_image(pixels, original, ~hole)}
        return {}

    def shown(self, inputs: TaskInputs) -> torch.Tensor:
        """The input as a grid shows it (uint8, the output's size): LR pixel-replicated, the
        hole mid-grey, a noisy image scaled into range as the VP state sqrt(abar_t) y."""
        if self.name == "denoise":
            return to_uint8(inputs.given / (1 + self.sigma ** 2) ** 0.5)
        scale = inputs.original.shape[-1] // inputs.given.shape[-1]
        return to_uint8(inputs.given).repeat_interleave(scale, -2).repeat_interleave(scale, -1)


def noised(images: torch.Tensor, sigma: float, seed: int, indices) -> torch.Tensor:
    """images + sigma n, image i's noise drawn from its own generator (seed, i)."""
    return images + sigma * PerSampleRNG(seed, indices).randn(tuple(images.shape[1:]))


def task_of(method, cell) -> Task:
    """The task a cell runs: its method's, denoising for a generation method given denoise_t, a
    training curve's point for one given train_step."""
    if cell.denoise_t:
        return Task("denoise", t=cell.denoise_t)
    if cell.train_step:
        return Task("train-curve")
    return Task(method.task, (cell.mask or "centre") if method.task == "inpaint" else "")
