"""Loading datasets into memory, splitting them deterministically, and sharding batches.

The driver loads the dataset once (``load_dataset``), checks it, hashes it, and puts the arrays
in Ray's object store; every worker reads the same arrays zero-copy and takes its own shard of
each epoch's permutation through a ``DistributedSampler`` whose epoch is set every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from mtp_core.spec import DatasetSpec, FileDataset, SklearnDataset, SyntheticDataset, TaskKind
from trainer.errors import DataError

__all__ = [
    "Dataset",
    "ShardedBatches",
    "feature_stats",
    "load_dataset",
    "split_indices",
    "validation_shard",
]

_SKLEARN_KIND = {
    "digits": TaskKind.CLASSIFICATION,
    "breast_cancer": TaskKind.CLASSIFICATION,
    "wine": TaskKind.CLASSIFICATION,
    "iris": TaskKind.CLASSIFICATION,
    "diabetes": TaskKind.REGRESSION,
}


@dataclass(frozen=True)
class Dataset:
    """Features (float32, ``[N, *sample_shape]``) and targets (int64 labels or float32)."""

    name: str
    features: np.ndarray
    targets: np.ndarray
    kind: TaskKind
    num_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = ()

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.features.shape[1:])


def _finish(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    kind: TaskKind,
    feature_names: list[str],
    spec: DatasetSpec,
    class_names: tuple[str, ...] = (),
) -> Dataset:
    if spec.max_samples is not None:
        x, y = x[: spec.max_samples], y[: spec.max_samples]
    if x.shape[0] == 0:
        raise DataError(f"dataset {name!r} is empty: 0 rows; it needs at least 2 rows")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())
        raise DataError(
            f"dataset {name!r} has {bad} rows with NaN or infinite feature values; "
            "clean them before training"
        )
    if kind is TaskKind.CLASSIFICATION:
        if class_names:
            num_classes = len(class_names)
        else:
            labels = np.unique(y)
            if labels.min() < 0:
                raise DataError(f"dataset {name!r}: class labels must be >= 0, got {labels.min()}")
            num_classes = int(labels.max()) + 1
        if num_classes < 2:
            raise DataError(f"dataset {name!r} has a single class; classification needs >= 2")
        y = np.ascontiguousarray(y, dtype=np.int64)
    else:
        y = np.ascontiguousarray(y, dtype=np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"dataset {name!r} has NaN or infinite target values")
        num_classes = 0
    if spec.image_shape is not None:
        c, h, w = spec.image_shape
        if c * h * w != x[0].size:
            raise DataError(
                f"dataset.image_shape {list(spec.image_shape)} holds {c * h * w} values but "
                f"each sample of {name!r} has {x[0].size} features"
            )
        x = x.reshape(x.shape[0], c, h, w)
    return Dataset(name, x, y, kind, num_classes, tuple(feature_names), class_names)


def _load_sklearn(spec: SklearnDataset) -> Dataset:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }[spec.name]
    bunch = loader()
    x = np.asarray(bunch.data)
    y = np.asarray(bunch.target)
    names = [str(n) for n in getattr(bunch, "feature_names", [f"f{i}" for i in range(x.shape[1])])]
    if spec.name == "digits" and spec.image_shape is None:
        spec = spec.model_copy(update={"image_shape": (1, 8, 8)})
    return _finish(f"sklearn:{spec.name}", x, y, _SKLEARN_KIND[spec.name], names, spec)


def _load_synthetic(spec: SyntheticDataset) -> Dataset:
    from sklearn.datasets import make_classification, make_regression

    informative = spec.n_informative or max(1, spec.n_features // 2)
    if spec.kind is TaskKind.CLASSIFICATION:
        if spec.n_classes > 2**informative:
            raise DataError(
                f"dataset.n_classes={spec.n_classes} needs n_informative >= "
                f"{int(np.ceil(np.log2(spec.n_classes)))} (got {informative})"
            )
        x, y = make_classification(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=informative,
            n_redundant=0,
            n_classes=spec.n_classes,
            n_clusters_per_class=1,
            random_state=spec.seed,
        )
    else:
        x, y = make_regression(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=informative,
            noise=spec.noise,
            random_state=spec.seed,
        )
        y = y / max(float(np.std(y)), 1e-12)  # unit-scale targets keep default lrs sensible
    names = [f"x{i}" for i in range(spec.n_features)]
    return _finish(f"synthetic:{spec.kind.value}", x, y, spec.kind, names, spec)


def _load_file(spec: FileDataset) -> Dataset:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(spec.path)
    if not path.is_file():
        raise DataError(f"dataset.path {str(path)!r} does not exist (or is not a file)")
    try:
        table = pq.read_table(path) if spec.source == "parquet" else pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(
            f"dataset.path {str(path)!r} is not a readable {spec.source} file: {err}"
        ) from None
    columns = table.column_names
    if table.num_rows == 0:
        raise DataError(f"dataset {str(path)!r} is empty: 0 rows; it needs at least 2 rows")
    if spec.target not in columns:
        raise DataError(
            f"dataset.target {spec.target!r} is not a column of {str(path)!r}; "
            f"columns are {columns}"
        )
    features = spec.features or [c for c in columns if c != spec.target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataError(
            f"dataset.features {missing} are not columns of {str(path)!r}; columns are {columns}"
        )
    if spec.target in features:
        raise DataError(f"dataset.features includes the target column {spec.target!r}")
    if not features:
        raise DataError(f"{str(path)!r} has no feature columns besides target {spec.target!r}")
    cols = []
    for name in features:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                or pa.types.is_boolean(col.type)):
            raise DataError(
                f"dataset feature column {name!r} in {str(path)!r} has type {col.type}; "
                "feature columns must be numeric (int, float or bool)"
            )
        if col.null_count:
            raise DataError(
                f"dataset feature column {name!r} in {str(path)!r} has {col.null_count} nulls"
            )
        cols.append(col.to_numpy().astype(np.float32, copy=False))
    x = np.stack(cols, axis=1) if cols else np.empty((0, 0), np.float32)
    target = table.column(spec.target)
    if target.null_count:
        raise DataError(
            f"dataset.target column {spec.target!r} in {str(path)!r} has {target.null_count} nulls"
        )
    kind = spec.kind
    if kind is None:
        kind = TaskKind.REGRESSION if pa.types.is_floating(target.type) else TaskKind.CLASSIFICATION
    class_names: tuple[str, ...] = ()
    if kind is TaskKind.CLASSIFICATION:
        if pa.types.is_integer(target.type) or pa.types.is_boolean(target.type):
            y = target.to_numpy().astype(np.int64)
        else:
            # string/categorical labels: classes are the sorted distinct values
            as_str = pc.cast(target, pa.string())
            uniq = sorted(v for v in pc.unique(as_str).to_pylist() if v is not None)
            class_names = tuple(uniq)
            lookup = {v: i for i, v in enumerate(uniq)}
            y = np.asarray([lookup[v] for v in as_str.to_pylist()], dtype=np.int64)
    else:
        if not (pa.types.is_integer(target.type) or pa.types.is_floating(target.type)):
            raise DataError(
                f"dataset.target {spec.target!r} has type {target.type}; regression needs numbers"
            )
        y = target.to_numpy().astype(np.float32)
    return _finish(str(path.name), x, y, kind, features, spec, class_names)


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Load the dataset a task names; raises DataError naming the file or field on bad input."""
    if isinstance(spec, SklearnDataset):
        ds = _load_sklearn(spec)
    elif isinstance(spec, SyntheticDataset):
        ds = _load_synthetic(spec)
    else:
        ds = _load_file(spec)
    if ds.num_samples < 2:
        raise DataError(f"dataset {ds.name!r} has {ds.num_samples} row; it needs at least 2")
    return ds


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation split into (train, validation) index arrays, both sorted.

    Sorting keeps each split in the dataset's order, so the split depends only on
    ``(n, validation_fraction, seed)`` and never on how the data is later sharded.
    """
    n_val = int(round(n * validation_fraction))
    n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64 accumulation, std floored so constants stay finite)."""
    flat = features.reshape(features.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    shape = features.shape[1:]
    return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)


def validation_shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank ``r`` evaluates rows ``r, r+W, r+2W, ...``: disjoint, covering, no padding."""
    return np.arange(rank, n, world_size)


class ShardedBatches:
    """This rank's batches of one epoch, in the order a seeded DistributedSampler gives.

    Batches are gathered by tensor indexing (one gather per batch) rather than per-sample
    ``__getitem__`` plus collate, which costs more than the step itself for small models.
    """

    def __init__(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
    ) -> None:
        self.features = features
        self.targets = targets
        self.batch_size = batch_size
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(len(features)),  # type: ignore[arg-type]
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed % (2**63),
            drop_last=False,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size

    @property
    def samples_per_epoch(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.features.index_select(0, idx), self.targets.index_select(0, idx)
