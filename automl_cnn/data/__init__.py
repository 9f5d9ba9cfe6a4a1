"""Datasets: builtin ones and local files, as :class:`ImageSplits` of uint8 tensors.

``load_dataset("digits")``, ``load_dataset("mnist:/data/fashion")``, ... return the splits;
``make_batches(splits, "train", ...)`` serves them, from the device or streamed from disk.
"""

from __future__ import annotations

from automl_cnn.data.batches import (
    DeviceBatches,
    StreamBatches,
    augment_batch,
    default_workers,
    make_batches,
)
from automl_cnn.data.cifar import SafeUnpickler, safe_unpickle
from automl_cnn.data.folder import ImageFiles, decode_image, load_or_stream, read_folder
from automl_cnn.data.formats import ArraySet, DatasetError, read_idx, read_mnist, read_npz
from automl_cnn.data.registry import (
    DATASETS,
    FORMATS,
    balanced_indices,
    dataset_help,
    load_dataset,
    load_search_data,
    resize_splits,
    take_train_subset,
)
from automl_cnn.data.splits import ImageSplits, make_splits, stratified_split

__all__ = [
    "DATASETS",
    "FORMATS",
    "ArraySet",
    "DatasetError",
    "DeviceBatches",
    "ImageFiles",
    "ImageSplits",
    "SafeUnpickler",
    "StreamBatches",
    "augment_batch",
    "balanced_indices",
    "dataset_help",
    "decode_image",
    "default_workers",
    "load_dataset",
    "load_search_data",
    "load_or_stream",
    "make_batches",
    "make_splits",
    "read_folder",
    "read_idx",
    "read_mnist",
    "read_npz",
    "resize_splits",
    "safe_unpickle",
    "stratified_split",
    "take_train_subset",
]
