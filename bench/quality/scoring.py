"""Scores a cell's samples batch by batch, as they are generated.

Features go straight into float64 running moments (`bench.quality.statistics.Moments`); a float16 copy
of each sample's features is kept for storage beside the row (paired comparisons, 2 bytes per
dimension per sample), float32 ones only for the metrics that need every one (KID,
precision/recall, density/coverage, CMMD, FID_inf) and logits only for the Inception Score. Along the way the
scorer takes FID of each disjoint seed block (its spread is FID's uncertainty); FID_inf comes
at the end from the kept features, for the whole cell and for each seed block (its spread).
"""
import dataclasses
from collections import defaultdict

import numpy as np
import torch

from bench.quality.distances import cmmd, density_coverage
from bench.quality.extractors import Extractor
from bench.quality.metrics import (FID_BLOCKS, FID_INFINITY, METRICS, PIXEL_METRICS, extract,
                                   fid_protocol, inception_score, kid, precision_recall,
                                   reference_features, reference_statistics,
                                   statistics_file_protocol, stored_metric)
from bench.quality.statistics import Moments, frechet_at_infinity, frechet_distance, mean_with_error
from methods.errors import DiffbenchError


@dataclasses.dataclass(frozen=True)
class Reference:
    """What samples are compared with: a dataset split's feature statistics and, when a metric
    needs them, its features."""
    stats: dict
    count: int
    features: torch.Tensor | None = None


def split_reference(extractor: Extractor, dataset: str, split: str, n_samples: int,
                    metrics) -> tuple[Reference, dict]:
    """Samples compared with a dataset split: its statistics (and its features when a metric
    needs them), and the metric protocol that names it."""
    stats, count = reference_statistics(extractor, dataset, split)
    needs_features = any(METRICS.get(m).needs == "features" for m in metrics)
    features = reference_features(extractor, dataset, split) if needs_features else None
    return (Reference(stats, count, features),
            fid_protocol(extractor, dataset, split, stats, count, n_samples, metrics))


def file_reference(extractor: Extractor, path: str, probe: torch.Tensor, n_samples: int, metrics,
                   where: str) -> tuple[Reference, dict]:
    """Samples compared with FID statistics from a file (mu, sigma; no features), checked against
    `probe` pixels shaped like the samples."""
    stats, count, protocol = statistics_file_protocol(extractor, path, probe, n_samples, metrics, where)
    return Reference(stats, count or 0), protocol


def block_ends(n_samples: int, blocks: int) -> list[int]:
    """Where each of `blocks` near-equal disjoint seed blocks ends."""
    return [round(n_samples * (j + 1) / blocks) for j in range(blocks)]


@dataclasses.dataclass
class BatchScores:
    """One batch's contribution to a cell's scores."""
    features: torch.Tensor
    logits: torch.Tensor | None = None
    correct: int = 0
    labelled: int = 0
    per_image: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    view: "BatchScores | None" = None     # an anagram's second view, scored for fid_view_b

    def cpu(self) -> "BatchScores":
        """On the CPU, so that another process can receive it whatever its device."""
        return dataclasses.replace(self, features=self.features.cpu(),
                                   logits=None if self.logits is None else self.logits.cpu(),
                                   view=self.view and self.view.cpu())


class CellScorer:
    """Feed it every batch of a cell in seed order (`add`), then read `finish()`:
    {metric name: (value, uncertainty or None)}."""

    def __init__(self, extractor: Extractor, reference: Reference, metrics, n_samples: int,
                 store_features: bool = True):
        self.store_features = store_features
        self.extractor, self.reference, self.n_samples = extractor, reference, n_samples
        self.metrics = set(metrics) | {"fid"}
        self.total = self.block = None
        self.block_ends = block_ends(n_samples, FID_BLOCKS)
        self.block_fids = []
        self.kept_features, self.kept_logits = [], []
        self.stored_features = []        # every sample's features, float16, for paired comparisons
        self.correct = self.labelled = 0
        self.per_image = defaultdict(list)
        self.view_scorer = None          # an anagram's second view (fid_view_b)

    def wants(self, need: str) -> bool:
        return any(METRICS.get(name).needs == need for name in self.metrics)

    def add(self, pixels_uint8: torch.Tensor, labels: torch.Tensor | None = None,
            per_image: dict[str, np.ndarray] | None = None) -> None:
        self.accumulate(self.measure(pixels_uint8, labels, per_image))

    def measure(self, pixels_uint8: torch.Tensor, labels: torch.Tensor | None = None,
                per_image: dict[str, np.ndarray] | None = None) -> BatchScores:
        """What one batch contributes (`per_image`: its task's per-image metrics); needs only
        the extractor, so any process can measure a batch and the process holding the scorer
        accumulate it."""
        layers = extract(self.extractor, pixels_uint8)
        logits = layers.get(self.extractor.logits_layer)
        scores = BatchScores(layers[self.extractor.feature_layer],
                             logits if "isc" in self.metrics else None, per_image=per_image or {})
        if labels is not None and self.extractor.classifies_dataset:
            scores.correct = int((logits.argmax(1) == labels.cpu()).sum())
            scores.labelled = len(labels)
        return scores

    def measure_views(self, pixels_uint8: torch.Tensor, view_a: torch.Tensor, view_b: torch.Tensor,
                      class_a: int, class_b: int, b_is_new: bool) -> BatchScores:
        """An anagram's or hybrid's batch: the sample's features (its FID), whether the domain
        classifier reads class a in view a and class b in view b (uint8 images; per image, so
        that both_acc pairs them), and with `b_is_new` (an anagram's transformed view, not the
        sample itself) view b's features for fid_view_b."""
        if not self.extractor.classifies_dataset:
            raise DiffbenchError("anagram and hybrid cells need a domain classifier to read their "
                                 f"views: use feature_extractor = \"lenet\", not {self.extractor.name!r}")
        scores = self.measure(pixels_uint8)
        logits = self.extractor.logits_layer
        reads_a = extract(self.extractor, view_a)[logits].argmax(1) == class_a
        layers_b = extract(self.extractor, view_b)
        reads_b = layers_b[logits].argmax(1) == class_b
        scores.per_image = {"view_a_acc": reads_a.double().numpy(), "view_b_acc": reads_b.double().numpy(),
                            "both_acc": (reads_a & reads_b).double().numpy()}
        scores.view = BatchScores(layers_b[self.extractor.feature_layer]) if b_is_new else None
        return scores

    def accumulate(self, scores: BatchScores) -> None:
        """Adds a measured batch; batches must come in seed order."""
        self._stream(scores.features.double())
        if self.store_features:
            self.stored_features.append(scores.features.cpu().to(torch.float16).numpy())
        if self.wants("features") or "fid_infinity" in self.metrics:
            self.kept_features.append(scores.features.float())
        if scores.logits is not None:
            self.kept_logits.append(scores.logits)
        self.correct += scores.correct
        self.labelled += scores.labelled
        for name, values in scores.per_image.items():
            self.per_image[name].append(values)
        if scores.view is not None:
            if self.view_scorer is None:
                self.view_scorer = CellScorer(self.extractor, self.reference, {"fid"}, self.n_samples,
                                              store_features=False)
            self.view_scorer.accumulate(scores.view)

    def features(self) -> np.ndarray:
        """Every sample's features in seed order (float16: for the spread of paired resamples;
        the scores themselves come from float64 moments)."""
        return np.concatenate(self.stored_features)

    def per_image_values(self) -> dict[str, np.ndarray]:
        """Every sample's per-image metrics (PSNR, SSIM, ...) in seed order."""
        return {name: np.concatenate(values) for name, values in self.per_image.items() if values}

    def _stream(self, features: torch.Tensor) -> None:
        """Adds features to the running moments, stopping at every block end."""
        if self.total is None:
            self.total, self.block = Moments(features.shape[1]), Moments(features.shape[1])
        while len(features):
            position = self.total.count
            stop = min(c for c in self.block_ends + [self.n_samples]
                       if c > position) if position < self.n_samples else position + len(features)
            head, features = features[:stop - position], features[stop - position:]
            self.total.update(head)
            self.block.update(head)
            self._checkpoint(self.total.count)

    def _checkpoint(self, count: int) -> None:
        if count in self.block_ends:
            if self.block.count >= 2:
                self.block_fids.append(frechet_distance(self.block.stats(), self.reference.stats))
            self.block = Moments(len(self.total.mean))

    def finish(self) -> dict[str, tuple[float, dict | None]]:
        if self.total is None or self.total.count != self.n_samples:
            seen = 0 if self.total is None else self.total.count
            raise RuntimeError(f"scored {seen} samples, expected {self.n_samples}")
        results = {"fid": (frechet_distance(self.total.stats(), self.reference.stats),
                           self._fid_spread())}
        kept = torch.cat(self.kept_features) if self.kept_features else None
        if "fd" in self.metrics:
            results["fd"] = results["fid"]
        if "fid_infinity" in self.metrics:
            results["fid_infinity"] = self._fid_infinity(kept.double().numpy())
        if kept is not None and self.reference.features is not None:
            self._feature_metrics(kept, results)
        if "isc" in self.metrics:
            mean, std = inception_score(torch.cat(self.kept_logits))
            results["isc"] = (mean, {"kind": "std_over_splits", "value": std})
        if self.labelled:
            results["class_acc"] = (self.correct / self.labelled, None)
        if self.view_scorer is not None:
            results["fid_view_b"] = self.view_scorer.finish()["fid"]
        for name in PIXEL_METRICS:
            if self.per_image[name]:
                values = np.concatenate(self.per_image[name])
                results[name] = (mean_with_error(values) if METRICS.get(name).aggregate == "mean"
                                 else (float(values.max()), None))
        return results

    def _fid_spread(self) -> dict | None:
        values = self.block_fids
        if len(values) < 2:
            return None
        std = float(np.std(values, ddof=1))
        return {"kind": "seed_blocks", "value": std / np.sqrt(len(values)),
                "note": "standard error of the full-N FID estimated as std over blocks / "
                        "sqrt(blocks)", "blocks": len(values), "block_values": values,
                "block_mean": float(np.mean(values)), "block_std": std}

    def _fid_infinity(self, features: np.ndarray) -> tuple[float, dict]:
        """FID_inf of the cell and of each seed block (the blocks FID's spread uses), its
        uncertainty the blocks' spread over sqrt(blocks), as FID's."""
        seed = FID_INFINITY["rng_seed"]
        fit = frechet_at_infinity(features, self.reference.stats, seed)
        starts = [0] + self.block_ends[:-1]
        blocks = [frechet_at_infinity(features[a:b], self.reference.stats, seed)["value"]
                  for a, b in zip(starts, self.block_ends) if b - a >= 4]
        error = float(np.std(blocks, ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else None
        return fit["value"], {"kind": "seed_blocks", "value": error, "blocks": len(blocks),
                              "block_values": blocks, "counts": fit["counts"],
                              "values": fit["values"], "slope": fit["slope"]}

    def _feature_metrics(self, features: torch.Tensor, results: dict) -> None:
        reference = self.reference.features
        if "kid" in self.metrics:
            mean, std = kid(features, reference)
            results["kid"] = (mean, {"kind": "std_over_subsets", "value": std})
        if {"precision", "recall"} & self.metrics:
            precision, recall = precision_recall(features, reference)
            for name, value in (("precision", precision), ("recall", recall)):
                if name in self.metrics:
                    results[name] = (value, None)
        if {"cmmd", "cmmd_unbiased"} & self.metrics:
            for name, value in zip(("cmmd", "cmmd_unbiased"), cmmd(features, reference)):
                if name in self.metrics:
                    results[name] = (value, None)
        if {"density", "coverage"} & self.metrics:
            density, coverage = density_coverage(features, reference)
            for name, value in (("density", density), ("coverage", coverage)):
                if name in self.metrics:
                    results[name] = (value, None)


def metric_records(scores: dict[str, tuple[float, dict | None]]) -> dict:
    """`finish()`'s scores as a row's metric entries, each with its metric's direction."""
    return {name: stored_metric(name, *value) for name, value in scores.items()}
