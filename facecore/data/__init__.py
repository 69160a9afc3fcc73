"""facecore.data: face datasets (real readers and a synthetic default), transforms, samplers.

Item convention (every dataset)
-------------------------------
``dataset[i] -> (image, target)``:

* ``image``: whatever ``transform`` returns; with ``transform=None`` a float32 tensor
  ``[C, H, W]`` in [0, 1], RGB (``C = 3``; greyscale files such as ORL's are converted to RGB
  unless the reader is built with ``mode="L"``, which gives ``C = 1``). Real readers hand
  the transform a ``PIL.Image``; :class:`SyntheticFaces` hands it the float tensor
  (facecore's transforms accept both).
* ``target``: a dict of Python ints / floats with the keys the dataset has:

  - ``age``: ordinal class index ``0..num_classes-1`` (after the dataset's offset, e.g.
    ``age_years - 21`` for the CORAL UTKFace protocol, or its age-group index);
  - ``age_years``: the raw age in years, where known;
  - ``gender``: 0 = male, 1 = female;
  - ``race``: the dataset's race / skin-tone code (documented per reader);
  - ``identity``: person index ``0..num_identities-1``;
  - ``attributes``: CelebA's 40 attributes as a 0/1 int64 tensor.

Every dataset has ``class_counts(key="age") -> list[int]`` and ``targets(key) -> Tensor``
(all labels, no image decoding), ``num_classes`` where it has ages and ``num_identities``
where it has identities. Splits are ``train`` / ``valid`` / ``test``, deterministic
(:func:`make_splits`, by seed; :func:`dataset_splits` gives the same items from a dataset
opened whole) or the dataset's official partition. :func:`open_dataset` opens a dataset by
its name in :data:`DATASETS` (the registry training uses). Corrupt / truncated files are detected, skipped and reported
once, never crashing a DataLoader worker (see :mod:`facecore.data.base`).
"""

from facecore.data import transforms
from facecore.data.base import FaceDataset, ImageFileDataset, load_image, verify_image
from facecore.data.cache import CachedImageDataset, DecodedImageCache
from facecore.data.prototypes import compute_gender_prototypes, load_prototypes, save_prototypes
from facecore.data.readers import (
    CORAL_NUM_CLASSES,
    CORAL_OFFSETS,
    FAIRFACE_AGE_GROUPS,
    LONDON_ETHNICITIES,
    AFADFolder,
    CelebA,
    CoralCSV,
    CoralCSVSplits,
    FairFace,
    IdentityFolders,
    LondonFaces,
    UTKFace,
    coral_csv_splits,
)
from facecore.data.registry import DATASETS, open_dataset
from facecore.data.samplers import PKSampler
from facecore.data.splits import SPLIT_BY, SPLIT_NAMES, dataset_splits, make_splits
from facecore.data.synthetic import SyntheticFaces
from facecore.data.transforms import (
    CORAL_PREPROCESS,
    SYNTHETIC_PREPROCESS,
    Normalize,
    PreprocessConfig,
)

__all__ = [
    "CORAL_NUM_CLASSES",
    "CORAL_OFFSETS",
    "CORAL_PREPROCESS",
    "DATASETS",
    "FAIRFACE_AGE_GROUPS",
    "AFADFolder",
    "CelebA",
    "CoralCSV",
    "CoralCSVSplits",
    "FairFace",
    "IdentityFolders",
    "LONDON_ETHNICITIES",
    "LondonFaces",
    "UTKFace",
    "CachedImageDataset",
    "DecodedImageCache",
    "coral_csv_splits",
    "compute_gender_prototypes",
    "load_prototypes",
    "save_prototypes",
    "SYNTHETIC_PREPROCESS",
    "FaceDataset",
    "ImageFileDataset",
    "Normalize",
    "PKSampler",
    "PreprocessConfig",
    "SyntheticFaces",
    "SPLIT_BY",
    "SPLIT_NAMES",
    "dataset_splits",
    "load_image",
    "make_splits",
    "open_dataset",
    "transforms",
    "verify_image",
]
