"""The noise-aware classifier behind classifier guidance (`methods.classifier_guidance`): one per
labelled dataset, trained once on its training split with EDM's log-normal noise levels, and
published or cached like every model. Its sidecar records the held-out accuracy at each of
`ACCURACY_SIGMAS`, so a reader sees how much the gradient can know at every noise level.
"""
import dataclasses
import hashlib
import json
import logging

import torch

from bench.data.datasets import ImageDataset, as_dataset
from bench.models.checkpoints import load_checkpoint, published_or_trained
from bench.models.training import TrainBudget, train
from methods.classifier_guidance import NoiseAwareClassifier, classifier_loss
from methods.errors import DiffbenchError

log = logging.getLogger("diffbench")
CLASSIFIER_BUDGET = TrainBudget(steps=1500, batch_size=128, lr=2e-3, warmup_steps=50,
                                ema_decay=0.999, precision="fp32")
CLASSIFIER_VERSION = 1
ACCURACY_SIGMAS = (0.002, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 80.0)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedClassifier:
    name: str
    module: NoiseAwareClassifier
    sha256: str
    accuracy_by_sigma: dict[str, float]


def classifier_name(dataset: ImageDataset) -> str:
    return f"classifier-{dataset.name}"


def load_classifier(dataset_spec: "ImageDataset | str", device: str = "cpu") -> LoadedClassifier:
    """The dataset's noise-aware classifier, trained first when neither published nor cached."""
    dataset = as_dataset(dataset_spec)
    if dataset.labels is None:
        raise DiffbenchError(f"classifier guidance needs class labels and dataset {dataset.name!r} "
                             "has none: use a labelled dataset or an unguided method")
    name = classifier_name(dataset)
    key = hashlib.sha256(json.dumps([CLASSIFIER_VERSION, dataset.content_hash,
                                     dataclasses.asdict(CLASSIFIER_BUDGET)]).encode()).hexdigest()[:16]
    weights = published_or_trained("classifiers", f"{name}-{key}",
                                   lambda folder: _train_classifier(dataset, folder, name),
                                   "classifier cache")
    tensors, meta = load_checkpoint(weights, f"classifier {name!r}")
    module = NoiseAwareClassifier(dataset.shape[0], dataset.num_classes)
    module.load_state_dict(tensors)
    module.eval().requires_grad_(False)
    log.info("classifier %s: %s", name, weights)
    return LoadedClassifier(name, module.to(device), meta["sha256"],
                            meta["accuracy_by_sigma"])


def _train_classifier(dataset: ImageDataset, directory, name: str) -> None:
    images, labels = dataset.split("train")
    torch.manual_seed(CLASSIFIER_BUDGET.seed)
    net = NoiseAwareClassifier(dataset.shape[0], dataset.num_classes)

    def loss_fn(model, index, generator):
        return classifier_loss(model, images[index], labels[index], generator)

    meta = {"classifier": name, "in_channels": dataset.shape[0], "num_classes": dataset.num_classes,
            "dataset_hash": dataset.content_hash, "version": CLASSIFIER_VERSION,
            "budget": dataclasses.asdict(CLASSIFIER_BUDGET), "precision": CLASSIFIER_BUDGET.precision,
            "torch": torch.__version__}
    train(net, loss_fn, len(images), CLASSIFIER_BUDGET, directory, name, meta,
          final_meta=lambda ema: {"accuracy_by_sigma": accuracy_by_sigma(ema, dataset)})


@torch.no_grad()
def accuracy_by_sigma(net: NoiseAwareClassifier, dataset: ImageDataset) -> dict[str, float]:
    """Held-out accuracy on x0 + sigma n at each of ACCURACY_SIGMAS (fixed noise draws)."""
    images, labels = dataset.split("test")
    generator = torch.Generator().manual_seed(0)
    accuracy = {}
    for sigma in ACCURACY_SIGMAS:
        noisy = images + sigma * torch.randn(images.shape, generator=generator)
        predicted = net(noisy, torch.full((len(images),), sigma)).argmax(1)
        accuracy[f"{sigma:g}"] = float((predicted == labels).float().mean())
    return accuracy
