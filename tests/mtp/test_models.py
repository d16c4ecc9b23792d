"""The model registry end to end on real runs: register, aliases and their history, rollback,
lineage over three generations of branches, compare, load by alias, and the bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtp.models import branch_version, compare_versions, open_model_registry, register_run
from mtp_core.errors import ConfigError, InputError
from tests.conftest import NO_REUSE
from tracking.models import (
    AliasMoveKind,
    LineageRelation,
    ModelNotFoundError,
    ModelRegistryError,
    format_history,
    format_lineage,
)
from trainer import parse_task
from trainer.api import Executor, train
from trainer.result import TrainingResult


def _task(name: str, **training: Any) -> dict[str, Any]:
    return {"name": name, "model": {"type": "mlp", "hidden_sizes": [16]},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01,
                         "test_split": 0.2, **training},
            "resources": {"num_workers": 1, "cpus_per_worker": 1}, "consistency": NO_REUSE}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def trained(storage: Path) -> TrainingResult:
    return train(parse_task(_task("iris-reg")), storage_path=storage,
                 executor=Executor.IN_PROCESS)


def test_register_records_the_runs_identity_and_load_by_alias(
        storage: Path, trained: TrainingResult) -> None:
    import mtp

    v = register_run(trained.run_dir, "iris-a", storage=storage)
    assert (v.name, v.version, v.parent_version, v.relation) == (
        "iris-a", 1, None, LineageRelation.ROOT)
    assert v.tags["mtp.weights_hash"] == trained.weights_hash
    assert v.tags["mtp.data_hash"] == trained.data_hash
    assert v.tags["mtp.seed"] == str(trained.seed) and v.tags["verified"] == "false"
    assert v.tags["mtp.cache_key"] == trained.cache_key
    registry = open_model_registry(storage)
    move = registry.set_alias("iris-a", 1, "champion", reason="first model")
    assert (move.from_version, move.to_version, move.kind) == (None, 1, AliasMoveKind.SET)
    assert registry.resolve("iris-a@champion").run_dir == str(Path(trained.run_dir).resolve())
    rows = {"sepal length (cm)": [5.1, 6.7], "sepal width (cm)": [3.5, 3.0],
            "petal length (cm)": [1.4, 5.2], "petal width (cm)": [0.2, 2.3]}
    by_alias = mtp.load_model("models:/iris-a@champion", storage_path=storage)
    by_dir = mtp.load_model(trained.run_dir)
    assert np.array_equal(by_alias.predict(rows), by_dir.predict(rows))
    assert np.array_equal(mtp.load_model("models:/iris-a/1", storage_path=storage)
                          .predict_proba(rows), by_dir.predict_proba(rows))
    assert registry.mark_verified(trained.cache_key or "", True) == ["iris-a@1"]
    assert registry.get("iris-a", 1).tags["verified"] == "true"


def test_rollback_after_two_alias_moves_goes_back_one_move_at_a_time(
        storage: Path, trained: TrainingResult) -> None:
    for _ in range(3):
        register_run(trained.run_dir, "iris-b", storage=storage)
    registry = open_model_registry(storage)
    for version in (1, 2, 3):
        registry.set_alias("iris-b", version, "champion", reason=f"promote {version}",
                           user="alice")
    back = registry.rollback("iris-b", "champion", reason="v3 regressed", user="bob")
    assert (back.from_version, back.to_version, back.kind) == (3, 2, AliasMoveKind.ROLLBACK)
    assert registry.resolve("iris-b@champion").version == 2
    assert registry.rollback("iris-b", "champion").to_version == 1
    with pytest.raises(ModelRegistryError, match="no earlier version recorded to roll back"):
        registry.rollback("iris-b", "champion")
    history = registry.history("iris-b", "champion")
    assert [(m.from_version, m.to_version, m.kind.value, m.user) for m in history] == [
        (None, 1, "set", "alice"), (1, 2, "set", "alice"), (2, 3, "set", "alice"),
        (3, 2, "rollback", "bob"), (2, 1, "rollback", history[-1].user)]
    assert history[3].reason == "v3 regressed"
    text = format_history(history)
    assert "v3 regressed" in text and text.count("rollback") == 3  # 2 rows + 1 default reason


def test_lineage_over_three_generations_of_branches(storage: Path,
                                                    trained: TrainingResult) -> None:
    root = register_run(trained.run_dir, "iris-c", storage=storage)
    child, child_result = branch_version(
        "iris-c@1", ["training.learning_rate=0.005"], storage=storage,
        executor=Executor.IN_PROCESS)
    assert (child.version, child.parent_version, child.relation) == (
        2, root.version, LineageRelation.BRANCH)
    assert child.changes == {"training.learning_rate": [0.01, 0.005]}
    # the child starts from the parent's weights: before its first epoch it stands exactly
    # where the parent ended (same task identity, so the same validation rows)
    assert child_result.initial_metrics == trained.history[-1].metrics
    assert child_result.seed == trained.seed
    assert child_result.history[0].metrics["val_loss"] != trained.history[0].metrics["val_loss"]
    grandchild, _ = branch_version("iris-c@2", ["training.epochs=2"], storage=storage,
                                   executor=Executor.IN_PROCESS)
    assert grandchild.parent_version == 2
    assert grandchild.changes == {"training.epochs": [3, 2]}
    registry = open_model_registry(storage)
    versions = registry.versions("iris-c")
    assert [(v.version, v.parent_version) for v in versions] == [(1, None), (2, 1), (3, 2)]
    text = format_lineage("iris-c", versions)
    assert "v2 branch of v1" in text and "v3 branch of v2" in text
    assert "training.learning_rate: 0.01 -> 0.005" in text
    assert "training.epochs: 3 -> 2" in text
    # a branch is a run like any other: asked again, it is served from the cache
    again, again_result = branch_version("iris-c@1", ["training.learning_rate=0.005"],
                                         storage=storage, executor=Executor.IN_PROCESS)
    assert again_result.weights_hash == child_result.weights_hash


def test_compare_a_version_with_itself_shows_no_difference(storage: Path,
                                                          trained: TrainingResult) -> None:
    register_run(trained.run_dir, "iris-d", storage=storage)
    c = compare_versions("iris-d@1", "iris-d@1", storage=storage)
    assert c.rows == 30  # iris' 150 rows, test_split 0.2
    assert all(m.difference == 0 for m in c.metrics)
    assert not c.test.significant


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda r: r.resolve("nobody@1"), ModelNotFoundError, "no registered model 'nobody'"),
    (lambda r: r.resolve("iris-e@7"), ModelNotFoundError, "model iris-e has no version 7; "
                                                          "versions: 1"),
    (lambda r: r.resolve("iris-e@prod"), ModelNotFoundError, "has no alias 'prod'"),
    (lambda r: r.set_alias("iris-e", 9, "champion"), ModelNotFoundError,
     "model iris-e has no version 9"),
    (lambda r: r.set_alias("iris-e", 1, "latest"), ModelRegistryError,
     "alias 'latest' is not allowed"),
    (lambda r: r.resolve("iris-e"), ModelRegistryError, "names no version"),
    (lambda r: r.rollback("iris-e", "champion"), ModelNotFoundError, "has no alias"),
])
def test_bad_references_name_the_missing_thing(storage: Path, trained: TrainingResult,
                                               call: Any, error: type, words: str) -> None:
    registry = open_model_registry(storage)
    if "iris-e" not in registry.models():
        register_run(trained.run_dir, "iris-e", storage=storage)
    with pytest.raises(error) as info:
        call(registry)
    assert words in str(info.value)
    assert isinstance(info.value, InputError)  # exit code 2


def test_a_branch_that_changes_the_architecture_is_refused(
        storage: Path, trained: TrainingResult) -> None:
    register_run(trained.run_dir, "iris-f", storage=storage)
    with pytest.raises(ConfigError, match=r"--set model.hidden_sizes=\[8\]: a branch keeps the "
                                          r"parent's architecture \(model.hidden_sizes is "
                                          r"\[16\] in iris-f@1\)"):
        branch_version("iris-f@1", ["model.hidden_sizes=[8]"], storage=storage,
                       executor=Executor.IN_PROCESS)
    with pytest.raises(ConfigError, match="give at least one --set"):
        branch_version("iris-f@1", [], storage=storage)


def test_init_from_a_run_with_another_model_is_refused(storage: Path,
                                                       trained: TrainingResult) -> None:
    task = _task("other-arch", init_from=trained.run_dir)
    task["model"]["hidden_sizes"] = [32]
    with pytest.raises(ConfigError, match=r"training.init_from=.*: the model differs from the "
                                          r"one the weights come from \(model.hidden_sizes: "
                                          r"\[16\] there, \[32\] here\)"):
        train(parse_task(task), storage_path=storage, executor=Executor.IN_PROCESS)


def test_the_registry_on_postgresql_keeps_versions_lineage_and_history_there(
        tmp_path: Path, trained: TrainingResult, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MTP_DATABASE_URL on a cluster: MLflow's registry and the platform's lineage and alias
    history all live in the PostgreSQL database, nothing in the storage path's SQLite."""
    from sqlalchemy import create_engine, text

    monkeypatch.setenv("MTP_DATABASE_URL", postgres_url)
    v = register_run(trained.run_dir, "iris-pg", storage=tmp_path)
    registry = open_model_registry(tmp_path)
    registry.set_alias("iris-pg", v.version, "champion", reason="on postgres", user="carol")
    assert registry.resolve("iris-pg@champion").run_dir == str(Path(trained.run_dir).resolve())
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            moves = conn.execute(text('SELECT model, alias, to_version, reason, "user" '
                                      "FROM mtp_alias_moves")).all()
            names = conn.execute(text("SELECT name FROM registered_models")).scalars().all()
    finally:
        engine.dispose()
    assert [tuple(m) for m in moves] == [("iris-pg", "champion", 1, "on postgres", "carol")]
    assert names == ["iris-pg"]
    assert not (tmp_path / "_db").exists()


def test_a_task_may_start_from_a_registered_alias(storage: Path,
                                                  trained: TrainingResult) -> None:
    """``training.init_from: models:/NAME@ALIAS`` in any task: resolved through the registry
    when the run starts; the run records where it started and is keyed by those weights."""
    v = register_run(trained.run_dir, "iris-g", storage=storage)
    open_model_registry(storage).set_alias("iris-g", v.version, "base")
    raw = _task("iris-g-finetune", epochs=2, init_from="models:/iris-g@base")
    raw["id"] = "iris-reg"  # the parent's identity: its seed and split
    result = train(parse_task(raw), storage_path=storage, run_name="iris-g-finetune",
                   executor=Executor.IN_PROCESS)
    assert result.initial_metrics == trained.history[-1].metrics
    assert result.task["training"]["init_from"] == str(Path(trained.run_dir).resolve())
    with pytest.raises(ModelNotFoundError, match="model iris-g has no alias 'gone'"):
        train(parse_task(_task("x", init_from="models:/iris-g@gone")), storage_path=storage,
              executor=Executor.IN_PROCESS)
