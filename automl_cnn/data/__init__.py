"""Datasets: builtin ones and local files, as :class:`ImageSplits` of uint8 tensors."""

from __future__ import annotations

from automl_cnn.data.batches import DeviceBatches, augment_batch
from automl_cnn.data.registry import DATASETS, DatasetError, load_dataset
from automl_cnn.data.splits import ImageSplits, make_splits, stratified_split

__all__ = [
    "DATASETS",
    "DatasetError",
    "DeviceBatches",
    "ImageSplits",
    "augment_batch",
    "load_dataset",
    "make_splits",
    "stratified_split",
]
