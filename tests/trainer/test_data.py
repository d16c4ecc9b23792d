from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mtp_core.spec import FileDataset, SklearnDataset, SyntheticDataset, TaskKind
from trainer import DataError
from trainer.batches import ShardedBatches
from trainer.data import load_dataset, split_indices, validation_shard


@pytest.mark.parametrize(
    ("name", "n", "shape", "kind", "classes"),
    [
        ("digits", 1797, (1, 8, 8), TaskKind.CLASSIFICATION, 10),
        ("breast_cancer", 569, (30,), TaskKind.CLASSIFICATION, 2),
        ("wine", 178, (13,), TaskKind.CLASSIFICATION, 3),
        ("iris", 150, (4,), TaskKind.CLASSIFICATION, 3),
        ("diabetes", 442, (10,), TaskKind.REGRESSION, 0),
    ],
)
def test_sklearn_datasets(name: str, n: int, shape: tuple[int, ...], kind: TaskKind,
                          classes: int) -> None:
    ds = load_dataset(SklearnDataset(source="sklearn", name=name))  # type: ignore[arg-type]
    assert ds.num_samples == n and ds.sample_shape == shape
    assert ds.kind is kind and ds.num_classes == classes
    assert ds.features.dtype == np.float32
    assert ds.targets.dtype == (np.int64 if classes else np.float32)


def test_synthetic_any_size_and_seeded() -> None:
    spec = SyntheticDataset(source="synthetic", n_samples=5000, n_features=40, n_classes=5,
                            seed=3)
    a, b = load_dataset(spec), load_dataset(spec)
    assert a.features.shape == (5000, 40) and a.num_classes == 5
    assert np.array_equal(a.features, b.features) and np.array_equal(a.targets, b.targets)
    c = load_dataset(spec.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.features, c.features)
    reg = load_dataset(SyntheticDataset(source="synthetic", kind=TaskKind.REGRESSION,
                                        n_samples=300, n_features=7))
    assert reg.kind is TaskKind.REGRESSION and reg.targets.shape == (300,)


def test_synthetic_too_many_classes_for_informative_features() -> None:
    with pytest.raises(DataError, match="n_classes=64 needs n_informative >= 6"):
        load_dataset(SyntheticDataset(source="synthetic", n_features=4, n_classes=64))


def _table() -> pa.Table:
    return pa.table({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 0, 1, 0],
                     "label": ["cat", "dog", "cat", "bird"]})


def test_parquet_and_csv_read_the_same(tmp_path: Path) -> None:
    pq.write_table(_table(), tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("a,b,label\n1.0,1,cat\n2.0,0,dog\n3.0,1,cat\n4.0,0,bird\n")
    p = load_dataset(FileDataset(source="parquet", path=tmp_path / "t.parquet", target="label"))
    c = load_dataset(FileDataset(source="csv", path=tmp_path / "t.csv", target="label"))
    for ds in (p, c):
        assert ds.feature_names == ("a", "b")
        assert ds.class_names == ("bird", "cat", "dog")
        assert ds.targets.tolist() == [1, 2, 1, 0]
        assert ds.features[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    reg = load_dataset(FileDataset(source="parquet", path=tmp_path / "t.parquet", target="a",
                                   features=["b"]))
    assert reg.kind is TaskKind.REGRESSION and reg.sample_shape == (1,)


def test_file_errors_name_the_file_and_column(tmp_path: Path) -> None:
    pq.write_table(_table(), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"dataset.target 'y' is not a column .*\['a', 'b'"):
        load_dataset(FileDataset(source="parquet", path=tmp_path / "t.parquet", target="y"))
    with pytest.raises(DataError, match=r"dataset.features \['zz'\] are not columns"):
        load_dataset(FileDataset(source="parquet", path=tmp_path / "t.parquet", target="b",
                                 features=["zz"]))
    with pytest.raises(DataError, match="'label' .* has type string; feature columns must be"):
        load_dataset(FileDataset(source="parquet", path=tmp_path / "t.parquet", target="b"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(FileDataset(source="csv", path=tmp_path / "none.csv", target="y"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="is not a readable parquet file"):
        load_dataset(FileDataset(source="parquet", path=tmp_path / "junk.parquet", target="y"))


def test_empty_dataset_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("a,label\n")
    with pytest.raises(DataError, match="is empty: 0 rows"):
        load_dataset(FileDataset(source="csv", path=tmp_path / "e.csv", target="label",
                                 kind=TaskKind.CLASSIFICATION))


def test_nan_features_are_rejected(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1.0, float("nan")], "y": [0, 1]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"has 1 row with NaN .*\(first: row 2, feature 'a'\)"):
        load_dataset(FileDataset(source="parquet", path=tmp_path / "n.parquet", target="y"))


def test_image_shape_must_match_features() -> None:
    with pytest.raises(DataError, match=r"image_shape \[1, 4, 4\] holds 16 values .* 64"):
        load_dataset(SklearnDataset(source="sklearn", name="digits", image_shape=(1, 4, 4)))


def test_split_is_deterministic_disjoint_and_covering() -> None:
    a_train, a_val = split_indices(1000, 0.2, seed=11)
    b_train, b_val = split_indices(1000, 0.2, seed=11)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    assert len(a_val) == 200 and len(np.intersect1d(a_train, a_val)) == 0
    assert np.array_equal(np.sort(np.concatenate([a_train, a_val])), np.arange(1000))
    c_train, _ = split_indices(1000, 0.2, seed=12)
    assert not np.array_equal(a_train, c_train)


def test_validation_shards_cover_without_overlap() -> None:
    shards = [validation_shard(11, r, 3) for r in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(11))


def test_sharded_batches_disjoint_per_rank_and_reshuffled_per_epoch() -> None:
    x = torch.arange(100, dtype=torch.float32).reshape(100, 1)
    y = torch.arange(100)
    ranks = [ShardedBatches(x, y, batch_size=8, rank=r, world_size=2, seed=5) for r in (0, 1)]
    seen = []
    for b in ranks:
        b.set_epoch(0)
        seen.append(torch.cat([yb for _, yb in b]).tolist())
    assert len(seen[0]) == len(seen[1]) == 50 and not set(seen[0]) & set(seen[1])
    ranks[0].set_epoch(1)
    assert torch.cat([yb for _, yb in ranks[0]]).tolist() != seen[0]
    ranks[0].set_epoch(0)
    assert torch.cat([yb for _, yb in ranks[0]]).tolist() == seen[0]
    assert len(ranks[0]) == 7  # ceil(50 / 8)
