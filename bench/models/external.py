"""External models: weights made elsewhere, wrapped into a Denoiser; nothing is trained.

A suite's `[models.X]` table gives a `source` instead of a recipe:
- `source = "diffusers"`: a `UNet2DModel` directory written by `save_pretrained` (config.json and
  diffusion_pytorch_model.safetensors; a pipeline folder's `unet/` is found too). Its discrete
  training schedule (beta_schedule, beta_start, beta_end, num_train_timesteps, prediction_type)
  comes from the scheduler config beside it (`scheduler/scheduler_config.json` or
  `scheduler_config.json`), else diffusers' DDPM defaults; keys in the table override both.
- `source = "safetensors"`: a weights file, a `factory = "module:function"` (or
  "file.py:function", relative to the suite) returning the torch.nn.Module they load into, and a
  `parameterization` (edm | eps | v | x0 | flow) with the fields it needs. The network is called
  as diffbench's own UNet is: net(x, c_noise, class_labels=None, cond_image=None).

Files are never unpickled: safetensors, or a .pt / .pth / .ckpt / .bin that loads with
torch.load(weights_only=True). The weights' sha256 is the row's checkpoint hash, and a key over
the weights, the configuration and the factory's source joins the cell key. Shapes, channels
and classes are checked against the dataset with a forward pass before any work.
"""
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.models.checkpoints import file_sha256
from bench.models.recipes import LoadedModel
from methods.errors import DiffbenchError
from methods.registry import did_you_mean, validate_number

SOURCES = ("diffusers", "safetensors")
PARAMETERIZATIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample", "edm": None, "flow": None}
PICKLE_SUFFIXES = (".pkl", ".pickle")
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
DDPM_DEFAULTS = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                 "num_train_timesteps": 1000, "prediction_type": "epsilon"}
# key -> (type, limits or choices); every number is bounded, every string a known choice
SCHEDULE_KEYS = {"beta_schedule": (str, {"linear", "scaled_linear", "squaredcos_cap_v2"}),
                 "beta_start": (float, (1e-8, 0.5)), "beta_end": (float, (1e-8, 0.999)),
                 "num_train_timesteps": (int, (2, 100_000))}
KEYS = {
    "diffusers": {"path": (str, None), "prediction_type": (str, {"epsilon", "v_prediction", "sample"}),
                  "num_classes": (int, (0, 100_000)), **SCHEDULE_KEYS},
    "safetensors": {"path": (str, None), "factory": (str, None), "factory_args": (dict, None),
                    "parameterization": (str, set(PARAMETERIZATIONS)),
                    "sigma_data": (float, (1e-6, 1e3)), "sigma_min": (float, (1e-8, 1e4)),
                    "sigma_max": (float, (1e-6, 1e6)), "time_scale": (float, (1e-6, 1e6)),
                    "num_classes": (int, (0, 100_000)), **SCHEDULE_KEYS},
}
REQUIRED = {"diffusers": ("path",), "safetensors": ("path", "factory", "parameterization")}


def check_options(source: str, options: dict, where: str) -> dict:
    """The table's keys by name, type and range, or a one-line error naming the key."""
    if source not in SOURCES:
        raise DiffbenchError(f"{where}: source must be one of {', '.join(SOURCES)}, got {source!r}")
    for key in REQUIRED[source]:
        if key not in options:
            raise DiffbenchError(f"{where}: source {source!r} needs a {key!r} key")
    checked = {}
    for key, value in options.items():
        if key not in KEYS[source]:
            raise DiffbenchError(f"{where}: unknown key {key!r} for source {source!r}"
                                 f"{did_you_mean(key, KEYS[source])}; valid: "
                                 f"{', '.join(sorted(KEYS[source]))}")
        kind, limit = KEYS[source][key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise DiffbenchError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
        if isinstance(limit, set) and value not in limit:
            raise DiffbenchError(f"{where}: {key} must be one of {', '.join(sorted(limit))}, got {value!r}")
        if isinstance(limit, tuple):
            validate_number(value, f"{where}: {key}", *limit, integer=kind is int)
        checked[key] = value
    return checked


def read_tensors(path: Path, where: str) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file that loads without unpickling code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if path.suffix in PICKLE_SUFFIXES:
        raise DiffbenchError(f"{where}: {path.name} is a pickle, which can run code when loaded: "
                             "convert it to .safetensors (safetensors.torch.save_file(state_dict, ...))")
    if path.suffix in TORCH_SUFFIXES:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DiffbenchError(
                f"{where}: {path.name} does not load with torch.load(weights_only=True) "
                f"({type(err).__name__}): it needs unpickling, which can run code; only if you trust "
                "its source, load its state dict once where it was made and save it with "
                "safetensors.torch.save_file") from None
    else:
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise DiffbenchError(f"{where}: {path} is not a readable safetensors file ({err})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise DiffbenchError(f"{where}: {path.name} is not a flat state dict of tensors")
    return tensors


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel behind diffbench's network call: a super-resolution model takes the
    upsampled LR image concatenated to its input, a class-conditional one its class labels."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, class_labels=None, cond_image=None):
        if cond_image is not None:
            x = torch.cat([x, cond_image.to(x.dtype)], dim=1)
        return self.unet(x, t, class_labels=class_labels).sample


def diffusers_folder(path: Path, where: str) -> tuple[Path, dict, dict]:
    """(weights file, UNet config, scheduler config) of a UNet2DModel or pipeline directory."""
    unet_dir = path / "unet" if (path / "unet" / "config.json").is_file() else path
    config_path = unet_dir / "config.json"
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    if not config_path.is_file():
        raise DiffbenchError(f"{where}: {path} has no config.json: give the directory "
                             "UNet2DModel.save_pretrained wrote")
    if not weights.is_file():
        pickled = unet_dir / "diffusion_pytorch_model.bin"
        hint = (" (only a pickled diffusion_pytorch_model.bin, which is never loaded: re-save it "
                "with save_pretrained(..., safe_serialization=True))") if pickled.is_file() else ""
        raise DiffbenchError(f"{where}: {unet_dir} has no diffusion_pytorch_model.safetensors{hint}")
    config = _read_json(config_path, where)
    if config.get("_class_name") != "UNet2DModel":
        raise DiffbenchError(f"{where}: {config_path} describes a {config.get('_class_name')!r}; "
                             "only diffusers' UNet2DModel is supported")
    scheduler = {}
    for candidate in (path / "scheduler" / "scheduler_config.json", path / "scheduler_config.json"):
        if candidate.is_file():
            scheduler = _read_json(candidate, where)
            break
    return weights, config, scheduler


def _read_json(path: Path, where: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DiffbenchError(f"{where}: cannot read {path} ({err})") from None
    if not isinstance(value, dict):
        raise DiffbenchError(f"{where}: {path} is not a JSON object")
    return value


@dataclasses.dataclass(frozen=True)
class External:
    """What an external model is: its network, weights and how its output becomes x0."""
    net: nn.Module
    weights: Path
    checkpoint_sha256: str
    description: dict       # source, configuration and hashes; its hash is the model key


def build(source: str, options: dict, where: str, factory=None) -> External:
    """The network and its description; a safetensors model's `factory` is (the function, its
    source's sha256), loaded by the caller (bench.config.checks), so nothing here loads code."""
    path = Path(options["path"])
    if source == "diffusers":
        from diffusers import UNet2DModel
        weights, config, scheduler = diffusers_folder(path, where)
        schedule = {**DDPM_DEFAULTS, **{k: scheduler[k] for k in DDPM_DEFAULTS if k in scheduler},
                    **{k: v for k, v in options.items() if k in DDPM_DEFAULTS}}
        net = DiffusersUNet(UNet2DModel.from_config(config))
        load_into(net.unet, read_tensors(weights, where), weights, where)
        checksum = file_sha256(weights)
        description = {"source": source, "unet_config_sha256": file_sha256(weights.parent / "config.json"),
                       "schedule": schedule, "parameterization": schedule["prediction_type"],
                       "num_classes": options.get("num_classes", 0)}
        return External(net, weights, checksum, description)
    function, factory_source = factory
    try:
        net = function(**options.get("factory_args", {}))
    except Exception as err:
        raise DiffbenchError(f"{where}: factory {options['factory']!r} failed "
                             f"({type(err).__name__}: {err})") from None
    if not isinstance(net, nn.Module):
        raise DiffbenchError(f"{where}: factory {options['factory']!r} returned a "
                             f"{type(net).__name__}, not a torch.nn.Module")
    load_into(net, read_tensors(path, where), path, where)
    description = {"source": source, "factory": options["factory"], "factory_sha256": factory_source,
                   **{k: v for k, v in options.items() if k not in ("path", "factory")}}
    return External(net, path, file_sha256(path), description)


def load_into(net: nn.Module, tensors: dict, path: Path, where: str) -> None:
    try:
        net.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise DiffbenchError(f"{where}: the weights in {path} do not fit the network ({first})") from None


def make_denoiser(external: External, options: dict) -> nn.Module:
    """The Denoiser of an external network, by its parameterization."""
    from methods.ddpm import discrete_alphas_cumprod
    from methods.denoisers import DiscreteVPDenoiser, EDMPrecond, FlowVelocityDenoiser
    description = external.description
    if description["source"] == "diffusers":
        schedule = description["schedule"]
        prediction, beta = schedule["prediction_type"], schedule
    else:
        prediction = PARAMETERIZATIONS[options["parameterization"]]
        beta = {**DDPM_DEFAULTS, **options}
    if prediction is not None:
        alphas_cumprod = discrete_alphas_cumprod(beta["beta_schedule"], beta["num_train_timesteps"],
                                                 beta["beta_start"], beta["beta_end"])
        return DiscreteVPDenoiser(external.net, alphas_cumprod, prediction)
    keys = ("sigma_min", "sigma_max", "sigma_data") if options["parameterization"] == "edm" else (
        "sigma_min", "sigma_max", "time_scale")
    kwargs = {k: options[k] for k in keys if k in options}
    return (EDMPrecond if options["parameterization"] == "edm" else FlowVelocityDenoiser)(
        external.net, **kwargs)


def check_fits(denoiser: nn.Module, dataset, num_classes: int, superres: bool, path: Path,
               where: str) -> None:
    """A forward pass on two of the dataset's image shape (with a label and the null label, and
    the LR image for super-resolution) must return that shape."""
    if num_classes and num_classes != dataset.num_classes:
        raise DiffbenchError(f"{where}: num_classes = {num_classes} but dataset {dataset.name!r} has "
                             f"{dataset.num_classes or 'no'} classes: fix num_classes or the dataset")
    x = torch.zeros((2, *dataset.shape))
    cond = {"labels": torch.tensor([0, num_classes])} if num_classes else {}
    if superres:
        cond["lowres"] = torch.zeros_like(x)
    try:
        with torch.no_grad():
            out = denoiser(x, torch.tensor([1.0, 1.0]), cond or None)
    except Exception as err:
        message = (str(err).splitlines() or [""])[0][:200]
        raise DiffbenchError(f"{where}: {path.name} does not run on dataset {dataset.name!r}'s "
                             f"{'x'.join(map(str, dataset.shape))} images{' with the LR image' if superres else ''} "
                             f"({type(err).__name__}: {message})") from None
    if tuple(out.shape) != tuple(x.shape):
        raise DiffbenchError(f"{where}: {path.name} returns {tuple(out.shape[1:])} for "
                             f"{tuple(x.shape[1:])} images of dataset {dataset.name!r}")


def model_key(external: External) -> str:
    identity = {"checkpoint_sha256": external.checkpoint_sha256, **external.description}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


_cache: dict[tuple, Any] = {}


def load_external(kind: str, source: str, options: dict, dataset, superres: bool, where: str,
                  device: str = "cpu", factory=None) -> LoadedModel:
    """The LoadedModel of an external model, checked against the dataset (built once a process
    for the same file, configuration, factory source and dataset)."""
    options = check_options(source, options, where)
    path = Path(options["path"])
    if not path.exists():
        raise DiffbenchError(f"{where}: {path} does not exist: check the path (relative to the suite file)")
    stamp = (kind, source, json.dumps(options, sort_keys=True), path.stat().st_mtime_ns,
             dataset.content_hash, superres, factory and factory[1])
    if stamp not in _cache:
        external = build(source, options, where, factory)
        external.net.eval().requires_grad_(False)
        denoiser = make_denoiser(external, options)
        num_classes = options.get("num_classes", 0)
        check_fits(denoiser, dataset, num_classes, superres, external.weights, where)
        meta = {"cache_key": model_key(external), "external": external.description,
                "weights": str(external.weights)}
        _cache[stamp] = LoadedModel(
            f"{source}:{path.name}", denoiser, external.checkpoint_sha256,
            sum(p.numel() for p in external.net.parameters()), num_classes, meta, external.weights)
    model = _cache[stamp]
    return dataclasses.replace(model, denoiser=model.denoiser.to(device))
