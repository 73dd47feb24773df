"""A user's ViT as the feature extractor: `feature_extractor = "dinov2:PATH"` or `"clip:PATH"`.

PATH is a timm model folder (config.json with the architecture and its arguments, and
model.safetensors: what `timm.models.save_for_hf` writes), or one .safetensors file holding
the kind's default architecture's weights (DINOv2 ViT-L/14, CLIP ViT-L/14 at 336 px, timm's
names), or `hub` for the kind's torch.hub model (online only). Weights are read without
unpickling; the extractor's identity is the sha256 of its loaded parameters.

Each kind prepares images as its reference implementation does, on the uint8 images:
- dinov2, as dgm-eval's DINOv2 encoder: the image as RGB, PIL bicubic resize to 224 x 224,
  [0, 1], ImageNet mean and std; the feature is the final-norm CLS token;
- clip, as CMMD's reader and embedder: RGB, centre crop to a square, PIL bicubic resize to the
  model's input size, [0, 1], CLIP's mean and std; the feature is the projected image
  embedding scaled to unit length.
torch-fidelity's own DINOv2 extractor differs: it resizes float images bilinearly, the TF1 way,
with no rounding to uint8 in between, and takes no local weights.
A timm DINOv2 run at 224 px resamples its position embedding once at load (bicubic, antialiased)
where the hub model interpolates at every forward, so the two agree closely, not to the bit.
"""
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.quality.extractors import Extractor, OwnExtractor
from methods.errors import DiffbenchError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class VitKind:
    architecture: str            # timm's name for a bare .safetensors file's network
    size: int | None             # input side; None: the model's own
    mean: tuple[float, ...]
    std: tuple[float, ...]
    centre_crop: bool
    unit_length: bool            # the embedding scaled to norm 1
    hub: tuple[str, str] | None  # torch.hub repository and entry point
    after: str                   # the reference implementation followed

    def preprocessing(self, size: int) -> dict:
        return {"resize": f"PIL bicubic to {size}x{size}", "centre_crop": self.centre_crop,
                "mean": list(self.mean), "std": list(self.std), "unit_length": self.unit_length,
                "after": self.after}


KINDS = {
    "dinov2": VitKind("vit_large_patch14_dinov2.lvd142m", 224, IMAGENET_MEAN, IMAGENET_STD, False,
                      False, ("facebookresearch/dinov2", "dinov2_vitl14"),
                      "dgm-eval DINOv2Encoder.transform"),
    "clip": VitKind("vit_large_patch14_clip_336.openai", None, CLIP_MEAN, CLIP_STD, True, True,
                    None, "CMMD io_util._center_crop_and_resize and embedding._clip_preprocess"),
}


def is_vit_spec(name: str) -> bool:
    return name.split(":", 1)[0] in KINDS and ":" in name


def resize_uint8(images_uint8: torch.Tensor, size: int, centre_crop: bool) -> torch.Tensor:
    """N x C x H x W uint8 -> N x 3 x size x size uint8 through PIL's bicubic filter (grey images
    become RGB first), image by image, as the reference readers do."""
    out = []
    for image in images_uint8.cpu().numpy():
        picture = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).convert("RGB")
        if centre_crop:
            width, height = picture.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            picture = picture.crop((left, top, left + side, top + side))
        out.append(np.asarray(picture.resize((size, size), resample=Image.BICUBIC)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


class VitFeatures(OwnExtractor):
    """torch-fidelity's extractor interface over a ViT: uint8 in, ("embedding",) out."""
    LAYERS = ("embedding",)

    def __init__(self, name: str, network: torch.nn.Module, kind: VitKind, size: int):
        super().__init__(name, ["embedding"])
        self.network, self.kind, self.size = network.eval().requires_grad_(False), kind, size
        self.register_buffer("mean", torch.tensor(kind.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(kind.std).view(1, 3, 1, 1))

    def forward(self, x):
        self.check_uint8(x)
        pixels = resize_uint8(x, self.size, self.kind.centre_crop).to(self.mean.device).float() / 255
        embedding = self.network((pixels - self.mean) / self.std).float()
        if self.kind.unit_length:
            embedding = embedding / embedding.norm(dim=1, keepdim=True)
        return (embedding,)


def parameters_sha256(network: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(network.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_network(kind_name: str, path: str) -> torch.nn.Module:
    """The network a spec names (see the module docstring)."""
    kind = KINDS[kind_name]
    if path == "hub":
        if kind.hub is None:
            raise DiffbenchError(f"extractor '{kind_name}:hub': {kind_name} has no torch.hub model; "
                                 "give a timm folder or a .safetensors file")
        return torch.hub.load(*kind.hub)
    import timm
    location = Path(path).expanduser()
    size = {"img_size": kind.size} if kind.size else {}
    try:
        if location.is_dir():
            if not (location / "model.safetensors").is_file():
                raise DiffbenchError(f"extractor '{kind_name}:{path}': the folder has no "
                                     "model.safetensors (pickled weights are not read): save the "
                                     "model with timm's save_for_hf(..., safe_serialization=True)")
            return timm.create_model(f"local-dir:{location}", pretrained=True, **size)
        if location.is_file() and location.suffix == ".safetensors":
            return timm.create_model(kind.architecture, pretrained=True,
                                     pretrained_cfg_overlay={"file": str(location)}, **size)
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        raise DiffbenchError(f"extractor '{kind_name}:{path}' could not be loaded "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); give a timm "
                             "folder (config.json + model.safetensors) or the default architecture's "
                             f"{kind.architecture} weights") from None
    raise DiffbenchError(f"extractor '{kind_name}:{path}': no such folder or .safetensors file; give "
                         "a timm model folder, a .safetensors file or 'hub'")


def vit_extractor(spec: str, device: str = "cpu") -> Extractor:
    """The Extractor of a `dinov2:PATH` / `clip:PATH` spec."""
    kind_name, path = spec.split(":", 1)
    kind = KINDS[kind_name]
    network = load_network(kind_name, path)
    size = kind.size or int(network.pretrained_cfg["input_size"][-1])
    sha256 = parameters_sha256(network)
    module = VitFeatures(f"{kind_name}-{sha256[:12]}", network, kind, size).to(device)
    return Extractor(module.name, module, sha256, "embedding",
                     {"weights": spec}, batch_size=64, preprocessing=kind.preprocessing(size))
