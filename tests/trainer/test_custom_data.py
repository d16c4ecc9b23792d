"""Custom data (``dataset.source: custom``): the user's loader runs in the driver, its arrays
are checked and content-hashed like any other data; every bad loader is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mtp.cli import main
from mtp_core.spec import parse_task
from tests.support.user_code import (
    fresh_user_code,  # noqa: F401 - the fixture below
    write_loaders,
)
from trainer import train_local
from trainer.data import load_dataset
from trainer.prepare import identify

pytestmark = pytest.mark.usefixtures("fresh_user_code")


def _task(code_dir: Path, loader: str, **params: Any) -> dict[str, Any]:
    return {"name": "custom-data",
            "model": {"type": "mlp", "hidden_sizes": [16]},
            "dataset": {"source": "custom", "loader": loader, "params": params,
                        "code_dir": str(code_dir)},
            "training": {"epochs": 8, "batch_size": 16, "learning_rate": 0.01},
            "resources": {"num_workers": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}


def test_arrays_from_a_loader_hash_like_the_same_data_from_anywhere(tmp_path: Path) -> None:
    write_loaders(tmp_path)
    custom = identify(parse_task(_task(tmp_path, "user_data:iris")))
    builtin = identify(parse_task({**_task(tmp_path, "user_data:iris"),
                                   "dataset": {"source": "sklearn", "name": "iris"}}))
    assert custom.dataset.kind.value == "classification" and custom.dataset.num_classes == 3
    assert custom.data_hash == builtin.data_hash
    fewer = identify(parse_task(_task(tmp_path, "user_data:iris", limit=100)))
    assert fewer.dataset.num_samples == 100 and fewer.data_hash != custom.data_hash


def test_a_table_with_a_text_target_becomes_named_classes(tmp_path: Path) -> None:
    write_loaders(tmp_path)
    data = load_dataset(parse_task(_task(tmp_path, "user_data:iris_table")).dataset)
    assert data.class_names == ("setosa", "versicolor", "virginica")
    assert data.features.shape == (150, 4) and data.feature_names == ("f0", "f1", "f2", "f3")


def test_a_model_trains_on_loaded_data(tmp_path: Path) -> None:
    write_loaders(tmp_path)
    summary = train_local(parse_task(_task(tmp_path, "user_data:iris")),
                          storage_path=tmp_path / "runs")
    assert summary["history"][-1]["val_accuracy"] >= 0.8, summary["history"][-1]


BAD = [
    ("nowhere:load", {}, "no module 'nowhere'"),
    ("user_data:missing", {}, "has no attribute 'missing'"),
    ("user_data:raises", {}, "raised ValueError: no such table"),
    ("user_data:one_thing", {}, "returned a ndarray; expected a pair"),
    ("user_data:ragged_rows", {}, "features of shape (5, 2) and targets of shape (4,)"),
    ("user_data:text_feature", {}, "feature column 'a' is string"),
    ("user_data:wrong_target", {}, "target 'label': the target must name one of them"),
    ("user_data:iris", {"nope": 1}, "raised TypeError"),
]


@pytest.mark.parametrize(("loader", "params", "words"), BAD, ids=[b[0] + str(b[1]) for b in BAD])
def test_a_bad_loader_exits_2_naming_it(tmp_path: Path, loader: str, params: dict, words: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    write_loaders(tmp_path / "code")
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(_task(tmp_path / "code", loader, **params)))
    (tmp_path / "runs").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code = main(["run", str(cfg), "--storage-path", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and f"dataset.loader={loader!r}" in err[0] and words in err[0], err
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert [p for p in after if not p.startswith("code-cache")] == before
