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
INPUTS = "test split, first n_samples"
PER_LINE = 4     # grids of a task with inputs: input | output | original triplets, four a line


@dataclasses.dataclass(frozen=True)
class TaskInputs:
    """What a batch of a task starts from (images in [-1, 1])."""
    original: torch.Tensor            # the test images
    given: torch.Tensor               # what the method is given: LR, guide or image with a hole
    cond: dict                        # what the sampler receives
    mask: torch.Tensor | None = None  # inpainting: 1 where known


class Task:
    """Generation from noise, and the interface every task shares (one class per task, as
    EDM's preconditionings share one): what a cell of the task is compared with, what its
    samples start from, what is measured on each of them and how its grid shows them."""
    name = "generate"
    has_inputs = False
    per_image_metrics: tuple[str, ...] = ()   # always computed for the task, never elsewhere

    @property
    def key(self) -> str:
        """Which cells share a protocol and a reference."""
        return self.name

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    def reference_split(self, config) -> str:
        return config.reference_split

    def uses_statistics_file(self, config) -> bool:
        """Compared with the suite's `reference_stats` file rather than a dataset split."""
        return bool(config.reference_stats)

    def metrics(self) -> tuple[str, ...]:
        return self.per_image_metrics

    def check(self, config, dataset) -> None:
        if self.has_inputs and config.n_samples > len(dataset.test_index):
            raise DiffbenchError(f"{config.path}: n_samples {config.n_samples} exceeds the "
                                 f"{len(dataset.test_index)} test images {self.name} runs on; "
                                 "lower n_samples")

    def protocol(self, config, dataset) -> dict:
        """The task's part of the metric protocol (none for generation)."""
        return {}

    def inputs(self, config, dataset, indices) -> TaskInputs | None:
        """What samples `indices` start from (None: noise alone)."""
        return None

    def per_image(self, pixels: torch.Tensor, inputs: TaskInputs, scale: int) -> dict[str, np.ndarray]:
        """Each output's fidelity metrics (pixels: the uint8 outputs)."""
        return {}

    def measure(self, scorer, pixels: torch.Tensor, inputs: TaskInputs | None, labels, scale: int,
                views, hparams: dict):
        """A batch's scores: its features, the classes asked for, its per-image metrics."""
        per_image = self.per_image(pixels, inputs, scale) if inputs else None
        return scorer.measure(pixels, labels, per_image)

    def starting_point(self, inputs: TaskInputs | None) -> tuple[torch.Tensor, float] | None:
        """Where a sampler with a network begins, when not at pure noise: (image, noise level)."""
        return None

    def conditioned_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The shape of the image the denoiser is conditioned on (None: none), for its FLOPs."""
        return None

    grid_columns: int | None = None   # the sample grid's images per line (None: the default)

    def grid_part(self, pixels: torch.Tensor, start: int, size: int, inputs: TaskInputs | None,
                  views=None) -> torch.Tensor:
        """A batch's share of the cell's `size`-image sample grid (its first samples from
        `start`, the batch's first index, while the grid is not full)."""
        return pixels[:max(0, size - start)]


class TrainCurve(Task):
    """Generation from the EMA weights after a chosen training step, scored as generation."""
    name = "train-curve"


class Anagram(Task):
    """Generation by a composition of two classes' estimates; the domain classifier reads each
    sample in both of the method's views, so the grid shows each as view a | view b."""
    name = "anagram"
    per_image_metrics = ("view_a_acc", "view_b_acc", "both_acc")
    grid_columns = 2 * PER_LINE

    def protocol(self, config, dataset) -> dict:
        return {"anagram": {"reader": "the suite's domain extractor's classifier (argmax of "
                            "its logits)", "views": "anagram: a as sampled, b through its "
                            "view; hybrid: a low-passed by its lowpass_sigma (from afar), b as "
                            "sampled (up close)", "fid": "the sample as generated; "
                            "fid_view_b: an anagram's transformed view, same reference"}}

    def measure(self, scorer, pixels, inputs, labels, scale, views, hparams):
        """Both views read by the domain classifier as the method's two classes."""
        view_a, view_b = views(pixels)
        return scorer.measure_views(pixels, view_a, view_b, hparams["class_a"], hparams["class_b"],
                                    view_b is not pixels)

    def grid_part(self, pixels, start, size, inputs, views=None):
        keep = max(0, size // 2 - start)
        if keep == 0:
            return pixels[:0]
        return torch.stack([view[:keep] for view in views(pixels[:keep])], 1).flatten(0, 1)


class EditingTask(Task):
    """A task whose samples start from the first n_samples test images (sample i from test
    image i), so every method of the task edits the same images; its grid shows input |
    output | original triplets."""
    has_inputs = True
    grid_columns = 3 * PER_LINE
    against = "the original"    # what the per-image fidelity is measured against

    def protocol(self, config, dataset) -> dict:
        fidelity = {**fidelity_convention(dataset.shape[0], 0), "against": self.against,
                    **self.fidelity_notes()}
        return {self.name: {**self.details(), "inputs": INPUTS, "fidelity": fidelity}}

    def details(self) -> dict:
        """The task's settings, as its protocol records them."""
        return {}

    def fidelity_notes(self) -> dict:
        return {}

    def inputs(self, config, dataset, indices) -> TaskInputs:
        return self.inputs_from(dataset.split("test")[0][list(indices)], config, indices)

    def inputs_from(self, original: torch.Tensor, config, indices) -> TaskInputs:
        raise NotImplementedError

    def per_image(self, pixels, inputs, scale):
        target = to_uint8(inputs.original)
        return {"psnr": psnr_per_image(pixels, target, 0), "ssim": ssim_per_image(pixels, target, 0)}

    def shown(self, inputs: TaskInputs) -> torch.Tensor:
        """The input as a grid shows it (uint8, the output's size)."""
        return to_uint8(inputs.given)

    def grid_part(self, pixels, start, size, inputs, views=None):
        keep = max(0, size // 4 - start)
        if keep == 0:                       # the grid is full: nothing to convert
            return pixels[:0]
        triplets = [self.shown(inputs)[:keep], pixels[:keep], to_uint8(inputs.original[:keep])]
        return torch.stack(triplets, 1).flatten(0, 1)


class SuperResolution(EditingTask):
    """The image downsampled (bench.data.degradation), given upsampled in cond["lowres"]; PSNR /
    SSIM against the HR image and LR-consistency, FID against the whole test split."""
    name = "superres"
    per_image_metrics = ("psnr", "ssim", "lr_mse")

    def reference_split(self, config) -> str:
        return "test"

    def uses_statistics_file(self, config) -> bool:
        return False

    def check(self, config, dataset) -> None:
        check_scale(dataset.shape, config.superres_scale, config.path)
        super().check(config, dataset)

    def protocol(self, config, dataset) -> dict:
        return {"superres": {"scale": config.superres_scale, "degradation": DEGRADATION, "inputs": INPUTS,
                             "fidelity": fidelity_convention(dataset.shape[0], config.superres_scale)}}

    def inputs_from(self, original, config, indices):
        lowres = lowres_of(original, config.superres_scale)
        return TaskInputs(original, lowres, {"lowres": condition_of(lowres, config.superres_scale)})

    def per_image(self, pixels, inputs, scale):
        target = to_uint8(inputs.original)
        return {"psnr": psnr_per_image(pixels, target, scale), "ssim": ssim_per_image(pixels, target, scale),
                "lr_mse": lr_mse_per_image(pixels, inputs.given, scale)}

    def conditioned_shape(self, shape):
        return shape    # on the upsampled LR image

    def shown(self, inputs):
        """The LR image pixel-replicated to the output's size."""
        scale = inputs.original.shape[-1] // inputs.given.shape[-1]
        return to_uint8(inputs.given).repeat_interleave(scale, -2).repeat_interleave(scale, -1)


class Img2Img(EditingTask):
    """A coarse guide of the image (a "sketch": block means, a few grey levels per channel), the
    kind of unrealistic input SDEdit turns into a realistic image; faithfulness to the guide."""
    name = "img2img"
    per_image_metrics = ("psnr", "ssim")
    against = "the guide"

    def check(self, config, dataset) -> None:
        if dataset.shape[1] % SKETCH_BLOCK or dataset.shape[2] % SKETCH_BLOCK:
            raise DiffbenchError(f"{config.path}: img2img needs image sides divisible by "
                                 f"{SKETCH_BLOCK} (the guide's blocks); pick another dataset")
        super().check(config, dataset)

    def details(self) -> dict:
        return {"guide": f"{SKETCH_BLOCK}x{SKETCH_BLOCK} block means, {SKETCH_LEVELS} levels per channel"}

    def inputs_from(self, original, config, indices):
        guide = sketch_of(original)
        return TaskInputs(original, guide, {"source": guide})

    def per_image(self, pixels, inputs, scale):
        target = to_uint8(inputs.given)
        return {"psnr": psnr_per_image(pixels, target, 0), "ssim": ssim_per_image(pixels, target, 0)}


class Inpainting(EditingTask):
    """The image with a hole (`mask`); PSNR / SSIM of the hole against the original, the largest
    change in the known region (must be 0)."""
    name = "inpaint"
    per_image_metrics = ("psnr", "ssim", "known_error")
    against = "the original, hole pixels only"

    def __init__(self, mask: str = "centre"):
        self.mask = mask

    @property
    def key(self) -> str:
        return f"{self.name}:{self.mask}"

    def details(self) -> dict:
        return {"mask": self.mask, "hole": MASKS[self.mask], "mask_seed": MASK_SEED}

    def fidelity_notes(self) -> dict:
        return {"psnr_cap": f"{ROUNDING_NOISE_PSNR:.2f} dB per image (the PSNR of uint8 rounding "
                "noise): an exactly reproduced hole counts at it, not at infinity",
                "known_error": "largest |output - input| on known pixels, grey levels, over every image"}

    def inputs_from(self, original, config, indices):
        mask = inpaint_masks(self.mask, original.shape[1:], indices)
        return TaskInputs(original, original * mask, {"source": original, "mask": mask}, mask)

    def per_image(self, pixels, inputs, scale):
        original, hole = to_uint8(inputs.original), inputs.mask[:, 0] == 0
        return {"psnr": np.minimum(psnr_per_image(pixels, original, 0, hole), ROUNDING_NOISE_PSNR),
                "ssim": ssim_per_image(pixels, original, 0, hole),
                "known_error": known_error_per_image(pixels, original, ~hole)}

    def shown(self, inputs):
        """The image with its hole black (the known pixels as given)."""
        return to_uint8(inputs.given)


class Denoising(EditingTask):
    """The image plus Gaussian noise at DDPM timestep `t`; a sampler with a network starts from
    it at its noise level; PSNR / SSIM against the clean image."""
    name = "denoise"
    per_image_metrics = ("psnr", "ssim")
    against = "the clean image"

    def __init__(self, t: int):
        self.t = t

    @property
    def key(self) -> str:
        return f"{self.name}:t{self.t}"

    @property
    def sigma(self) -> float:
        return ddpm_sigma(self.t)

    def details(self) -> dict:
        return {"t": self.t, "sigma": self.sigma,
                "noise": "y = x0 + sigma n, sigma = sqrt((1 - abar_t) / abar_t) on DDPM's linear "
                "schedule (beta 1e-4..0.02, T = 1000, t in 1..T)", "noise_seed": NOISE_SEED,
                "heldout": f"first {HELDOUT_IMAGES} training images, noise seed {HELDOUT_NOISE_SEED} "
                "(for methods tuned on held-out pairs)"}

    def inputs_from(self, original, config, indices):
        noisy = noised(original, self.sigma, NOISE_SEED, indices)
        return TaskInputs(original, noisy, {"source": noisy})

    def starting_point(self, inputs):
        return inputs.given, self.sigma

    def heldout(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out (noisy, clean) pairs, for a method that tunes on them."""
        clean = dataset.split("train")[0][:HELDOUT_IMAGES]
        return noised(clean, self.sigma, HELDOUT_NOISE_SEED, range(len(clean))), clean

    def shown(self, inputs):
        """The noisy image scaled into range as the VP state sqrt(abar_t) y."""
        return to_uint8(inputs.given / (1 + self.sigma ** 2) ** 0.5)


def noised(images: torch.Tensor, sigma: float, seed: int, indices) -> torch.Tensor:
    """images + sigma n, image i's noise drawn from its own generator (seed, i)."""
    return images + sigma * PerSampleRNG(seed, indices).randn(tuple(images.shape[1:]))


def task_of(method, cell) -> Task:
    """The task a cell runs: its method's, denoising for a generation method given denoise_t, a
    training curve's point for one given train_step."""
    if cell.denoise_t:
        return Denoising(cell.denoise_t)
    if cell.train_step:
        return TrainCurve()
    if method.task == "inpaint":
        return Inpainting(cell.mask or "centre")
    return TASKS[method.task]()


TASKS = {task.name: task for task in (Task, TrainCurve, Anagram, SuperResolution, Img2Img, Inpainting,
                                      Denoising)}
