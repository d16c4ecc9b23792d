"""Golden numerics: reference tasks must reproduce their checked-in losses and weights exactly.

Every run trains the digits MLP (examples/digits_mlp.yaml) on CPU and compares, bit for bit,
the per-epoch train_loss / val_loss / val_accuracy, the seed and the final weights hash with
``tests/golden/<hardware class>/<name>.json`` (results are bit-identical within a hardware
class only: see reference.py; on a class without files, with the reference trained here):

- ``digits_mlp_ws1``: world size 1, all 15 epochs, in this process (``trainer.train_local``)
  with one torch thread (CPU results depend on the thread count, which torch would otherwise
  take from the machine's cores; a Ray Train worker has ``cpus_per_worker`` threads);
- ``digits_mlp_ws2``: world size 2 on a local Ray (``trainer.train``, 2 Ray Train workers,
  3 epochs; tests/integration/test_job_submit.py checks its ``ray job submit`` run against the
  same file);
- ``digits_fault_tolerance_ws2`` and ``digits_parameter_server_ws2`` (tasks in
  ``tests/golden/tasks/``): the uninterrupted runs that tests/integration/test_fault_tolerance.py
  and test_parameter_server.py compare against; those tests read the files instead of training
  the references again (``reference.current``), and the files are regenerated like the others.

When the numbers change on purpose (a model, loss, optimizer, data-split or loop change):

1. bump ``MODEL_CODE_VERSION`` in trainer/versions.py: it is part of the result cache key, so
   results of the old code are no longer served from a cache or registry;
2. regenerate the files from the repository root::

       python -m tests.golden.regenerate                  # every reference
       python -m tests.golden.regenerate digits_mlp_ws1   # one

   on each hardware class that has files (a machine of another class records its own).

   (it refuses to rewrite numbers that changed under the recorded MODEL_CODE_VERSION and
   torch/numpy versions; ``--force`` overrides that).

A mismatch message names the first differing epoch and metric and which of the two steps is
missing. The files checked in first were produced by commit 6fc8dfc (before the layer
refactor) and reproduced exactly by the code after it.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import pytest
import torch

from tests.golden import reference
from tests.golden.reference import REFERENCES, WS1, WS2, GoldenMismatch, Numerics, check
from trainer.versions import MODEL_CODE_VERSION


def test_digits_mlp_world_size_1_matches_its_golden_file(tmp_path: Path) -> None:
    check(WS1, reference.run(WS1, tmp_path))


def test_digits_mlp_world_size_1_in_process_matches_its_golden_file(tmp_path: Path) -> None:
    """``train(..., executor=IN_PROCESS)`` (how a 1-worker study trial trains) stores and
    caches the same numbers as the loop in this process."""
    from trainer.api import Executor, train

    result = train(WS1.task(), storage_path=tmp_path, use_cache=False,
                   executor=Executor.IN_PROCESS)
    check(WS1, Numerics.from_result(result))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_digits_mlp_world_size_1_on_ray_train_matches_its_golden_file(tmp_path: Path) -> None:
    """One Ray Train worker gives the weights of the in-process loop: a 1-worker study trial
    (in-process) and ``mtp run`` of the same task (Ray Train) agree bit for bit."""
    from trainer.api import Executor, train

    task = WS1.task()
    assert task.resources.num_workers == 1
    result = train(task, storage_path=tmp_path, use_cache=False, executor=Executor.RAY_TRAIN)
    check(WS1, Numerics.from_result(result))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_digits_mlp_world_size_2_matches_its_golden_file(tmp_path: Path) -> None:
    check(WS2, reference.run(WS2, tmp_path))


# -- the files and the comparison, without training ---------------------------------------------


_FILES = sorted(reference.GOLDEN_DIR.glob("*/*.json"))


def test_every_reference_has_golden_files_and_only_references_do() -> None:
    for cls in {p.parent.name for p in _FILES}:  # a class's files are recorded together
        assert {p.stem for p in _FILES if p.parent.name == cls} == set(REFERENCES), cls


@pytest.mark.parametrize("path", _FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_file_matches_its_reference_and_the_model_code_version(path: Path) -> None:
    ref = REFERENCES[path.stem]
    golden = json.loads(path.read_text())
    assert golden == reference.record(ref, Numerics.from_golden(golden)) | {
        "versions": golden["versions"], "model_code_version": golden["model_code_version"],
        "hardware_class": path.parent.name}
    assert golden["model_code_version"] == MODEL_CODE_VERSION, (
        f"MODEL_CODE_VERSION is {MODEL_CODE_VERSION!r}, {ref.path.name} was recorded under "
        f"{golden['model_code_version']!r}: regenerate with {ref.regenerate_command}")
    assert len(golden["epochs"]) == ref.task().training.epochs


@pytest.fixture
def some_class(monkeypatch: pytest.MonkeyPatch) -> str:
    """Pretend this machine is of the class of WS1's first recorded file (the comparison
    tests below need a file, whatever this machine's class)."""
    recorded = reference.recorded(WS1)[0].parent.name
    monkeypatch.setattr(reference, "HARDWARE", recorded)
    return recorded


def test_the_hardware_class_names_the_architecture_vendor_and_simd_level() -> None:
    cls = reference.HARDWARE
    assert cls.startswith(f"cpu-{platform.machine()}-"), cls
    assert cls.endswith(f"-{torch.backends.cpu.get_cpu_capability()}"), cls
    assert Path(cls).name == cls and " " not in cls  # a folder name


def test_a_class_without_files_compares_with_the_reference_trained_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "HARDWARE", "cpu-test-unrecorded")
    monkeypatch.setattr(reference, "_TRAINED_HERE", {})
    assert not WS1.path.exists()
    here = reference.current(WS1)  # trained now, once
    assert here["hardware_class"] == "cpu-test-unrecorded"
    assert here["model_code_version"] == MODEL_CODE_VERSION
    check(WS1, reference.run(WS1, tmp_path))  # reproducible on this machine
    with pytest.raises(GoldenMismatch, match="differs from the same reference trained again on "
                       "this machine .epoch 3 train_loss.*cpu-test-unrecorded has no golden"):
        check(WS1, _perturbed(Numerics.from_golden(here), 3))


def _perturbed(numerics: Numerics, epoch: int) -> Numerics:
    """``numerics`` with epoch ``epoch``'s train_loss one ulp further."""
    import math

    epochs = [list(e) for e in numerics.epochs]
    metric, value = epochs[epoch - 1][0]
    epochs[epoch - 1][0] = (metric, math.nextafter(value, math.inf))
    return dataclasses.replace(numerics, epochs=tuple(tuple(e) for e in epochs))


def test_changed_numbers_under_the_same_model_code_version_say_bump_it(some_class: str) -> None:
    golden = reference.load(WS1)
    observed = _perturbed(Numerics.from_golden(golden), epoch=7)
    assert reference.mismatch(WS1, golden, Numerics.from_golden(golden)) is None
    with pytest.raises(GoldenMismatch) as err:
        check(WS1, observed)
    msg = str(err.value)
    assert "numerics changed (epoch 7 train_loss: golden " in msg
    assert "bump MODEL_CODE_VERSION in trainer/versions.py" in msg
    assert "python -m tests.golden.regenerate digits_mlp_ws1" in msg


def test_a_changed_weights_hash_alone_is_a_mismatch(some_class: str) -> None:
    golden = reference.load(WS2)
    observed = dataclasses.replace(Numerics.from_golden(golden), weights_hash="0" * 64)
    msg = reference.mismatch(WS2, golden, observed)
    assert msg is not None and "final weights hash" in msg and "bump MODEL_CODE_VERSION" in msg


def test_a_bumped_model_code_version_asks_for_regeneration_only(some_class: str) -> None:
    golden = {**reference.load(WS1), "model_code_version": "models-v0"}
    same = reference.mismatch(WS1, golden, Numerics.from_golden(golden))
    assert same is not None and "recorded under 'models-v0'" in same
    assert "regenerate the golden file" in same and "bump" not in same
    changed = reference.mismatch(WS1, golden, _perturbed(Numerics.from_golden(golden), 1))
    assert changed is not None and "numerics changed (epoch 1 train_loss" in changed


def test_other_torch_or_numpy_versions_ask_for_regeneration(some_class: str) -> None:
    golden = {**reference.load(WS1), "versions": {"torch": "0.0", "numpy": "0.0"}}
    assert reference.mismatch(WS1, golden, Numerics.from_golden(golden)) is None
    msg = reference.mismatch(WS1, golden, _perturbed(Numerics.from_golden(golden), 2))
    assert msg is not None and "cache key already includes the torch and numpy" in msg


def test_regeneration_refuses_changed_numbers_under_the_same_model_code_version(
        some_class: str) -> None:
    from tests.golden.regenerate import refusal

    golden = reference.load(WS1)
    same = Numerics.from_golden(golden)
    assert refusal(WS1, golden, same) is None
    assert refusal(WS1, None, same) is None  # a new reference
    msg = refusal(WS1, golden, _perturbed(same, 4))
    assert msg is not None and "epoch 4 train_loss" in msg and "bump it" in msg
    bumped = {**golden, "model_code_version": "models-v0"}
    assert refusal(WS1, bumped, _perturbed(same, 4)) is None


def test_numbers_used_without_training_refuse_a_stale_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, some_class: str) -> None:
    """The fault-tolerance and parameter-server tests read their reference numbers from golden
    files: one recorded under another MODEL_CODE_VERSION is refused with the command to run."""
    ref = reference.FAULT_TOLERANCE
    assert reference.current(ref)["weights_hash"] == reference.load(ref)["weights_hash"]
    stale = tmp_path / some_class / ref.path.name
    stale.parent.mkdir()
    stale.write_text(ref.path.read_text().replace(MODEL_CODE_VERSION, "models-v0"))
    monkeypatch.setattr(reference, "GOLDEN_DIR", tmp_path)
    with pytest.raises(GoldenMismatch, match="recorded under 'models-v0'.*regenerate it with "
                       "python -m tests.golden.regenerate digits_fault_tolerance_ws2"):
        reference.current(ref)
