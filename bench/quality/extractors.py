"""Feature extractors for FID, registered with torch-fidelity.

`lenet-<dataset>`: a LeNet-style digit classifier trained on the dataset's training split and
cached like any checkpoint. Its 128-d penultimate layer is the feature space, so its FID is a
*domain* FID: never comparable with Inception FID, and every row names the extractor.
"""
import dataclasses
import functools
import hashlib
import json

import torch
import torch_fidelity
from torch import nn
from torch.nn import functional as F
from torch_fidelity.utils import create_feature_extractor

from bench.data.datasets import ImageDataset, load_dataset
from bench.data.quantize import from_uint8
from bench.models.checkpoints import load_checkpoint, published_or_trained
from bench.models.training import TrainBudget, train
from methods.errors import DiffbenchError

LENET_FEATURES = ("fc1", "logits")
LENET_BUDGET = TrainBudget(steps=400, batch_size=128, lr=2e-3, warmup_steps=20, ema_decay=0.99,
                           precision="fp32")
LENET_VERSION = 2   # 2: test accuracy written with the weights, in one sidecar


class LeNet(nn.Module):
    """Two 5x5 conv + pool stages, a 128-unit hidden layer, a linear classifier."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(64 * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2, ceil_mode=True)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2, ceil_mode=True)
        hidden = F.relu(self.fc1(self.pool(h).flatten(1)))
        return hidden, self.fc2(hidden)

    def forward(self, x):
        return self.features(x)[1]


class OwnExtractor(torch_fidelity.FeatureExtractorBase):
    """What torch-fidelity asks of an extractor this project defines: its layers (`LAYERS`, the
    first the default for every metric), never compiled, uint8 images in."""
    LAYERS: tuple[str, ...] = ()

    @classmethod
    def get_provided_features_list(cls):
        return cls.LAYERS

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric):
        return cls.LAYERS[0]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    @staticmethod
    def check_uint8(x: torch.Tensor) -> None:
        if x.dtype != torch.uint8:
            raise TypeError("feature extractor expects uint8 images")


class LeNetExtractor(OwnExtractor):
    """torch-fidelity wrapper: uint8 NCHW in, (fc1, logits) features out."""
    LAYERS = LENET_FEATURES

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        tensors, meta = load_checkpoint(feature_extractor_weights_path, f"feature extractor {name!r}")
        self.net = LeNet(meta["in_channels"], meta["num_classes"])
        self.net.load_state_dict(tensors)

    def forward(self, x):
        self.check_uint8(x)
        hidden, logits = self.net.features(from_uint8(x))
        wanted = {"fc1": hidden, "logits": logits}
        return tuple(wanted[name] for name in self.features_list)


@dataclasses.dataclass(frozen=True, eq=False)
class Extractor:
    """A ready feature extractor plus what identifies it in a metric fingerprint."""
    name: str
    module: torch_fidelity.FeatureExtractorBase
    weights_sha256: str
    feature_layer: str
    info: dict
    rgb: bool = False          # the network takes RGB: grey images are repeated to 3 channels
    batch_size: int = 500      # images per forward pass
    logits_layer: str | None = None   # class logits, for the Inception Score
    classifies_dataset: bool = False  # its logits are the dataset's classes (class accuracy)
    preprocessing: dict | None = None  # how images reach the network, when not the network's own

    @torch.no_grad()
    def __call__(self, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        device = next(self.module.parameters()).device
        if self.rgb and images_uint8.shape[1] == 1:
            images_uint8 = images_uint8.expand(-1, 3, -1, -1)
        features = self.module(images_uint8.to(device))
        return self.module.convert_features_tuple_to_dict(features)


@functools.lru_cache(maxsize=None)
def _register_with_torch_fidelity(name: str) -> None:
    torch_fidelity.register_feature_extractor(name, LeNetExtractor)


def lenet_extractor(dataset_spec: str, device: str = "cpu", weights_path: str | None = None) -> Extractor:
    """The LeNet extractor for a labelled dataset, trained once and cached (never given weights)."""
    if weights_path:
        raise DiffbenchError("extractor 'lenet' trains its own weights: inception_weights applies "
                             "only to feature_extractor = \"inception\"")
    dataset = load_dataset(dataset_spec)
    if dataset.labels is None:
        raise DiffbenchError(f"extractor 'lenet-{dataset.name}' needs class labels and dataset "
                             f"{dataset.name!r} has none: choose another feature extractor")
    name = f"lenet-{dataset.name}"
    key = hashlib.sha256(json.dumps([LENET_VERSION, dataset.content_hash,
                                     dataclasses.asdict(LENET_BUDGET)]).encode()).hexdigest()[:16]
    weights = published_or_trained("extractors", f"{name}-{key}",
                                   lambda folder: _train_lenet(dataset, folder, name), "extractor cache")
    _register_with_torch_fidelity(name)
    module = create_feature_extractor(name, list(LENET_FEATURES), cuda=False, verbose=False,
                                      feature_extractor_weights_path=weights).to(device)
    _, meta = load_checkpoint(weights, f"feature extractor {name!r}")
    return Extractor(name, module, meta["sha256"], "fc1",
                     {"test_accuracy": meta.get("test_accuracy"), "dataset_hash": dataset.content_hash,
                      "weights_path": str(weights)},
                     logits_layer="logits", classifies_dataset=True)


def inception_extractor(dataset_spec: str, device: str = "cpu",
                        weights_path: str | None = None) -> Extractor:
    """Inception FID features (2048-d pool3), any dataset; images are resized to 299 inside.
    Weights: see `bench.quality.inception.resolve_inception_weights`."""
    from bench.quality.inception import (INCEPTION_FEATURE, INCEPTION_NAME,
                                         inception_extractor_module)
    module, sha, weights = inception_extractor_module(weights_path)
    return Extractor(INCEPTION_NAME, module.to(device), sha, INCEPTION_FEATURE,
                     {"weights": f"{weights.source}: {weights.path.name}"}, rgb=True,
                     batch_size=50, logits_layer="logits_unbiased" if weights.has_logits else None)


def _train_lenet(dataset: ImageDataset, directory, name) -> None:
    """Trains the LeNet; its test accuracy goes into the weights' sidecar in the same write."""
    images, labels = dataset.split("train")
    torch.manual_seed(LENET_BUDGET.seed)
    net = LeNet(dataset.shape[0], dataset.num_classes)

    def loss_fn(model, index, generator):
        return F.cross_entropy(model(images[index]), labels[index])

    meta = {"extractor": name, "in_channels": dataset.shape[0], "num_classes": dataset.num_classes,
            "dataset_hash": dataset.content_hash, "version": LENET_VERSION,
            "precision": LENET_BUDGET.precision, "torch": torch.__version__}
    train(net, loss_fn, len(images), LENET_BUDGET, directory, name, meta,
          final_meta=lambda ema: {"test_accuracy": held_out_accuracy(ema, dataset)})


@torch.no_grad()
def held_out_accuracy(net: LeNet, dataset: ImageDataset) -> float:
    images, labels = dataset.split("test")
    return float((net(images).argmax(1) == labels).float().mean())
