"""Golden numerics of reference tasks: what a golden file records and how a run is compared.

A reference is a task config plus overrides trained at one world size on CPU. Its golden file
(``tests/golden/<hardware class>/<name>.json``) records the per-epoch ``train_loss``,
``val_loss`` and ``val_accuracy`` exactly as the run stores them (JSON of the Python float:
repr round-trips), the seed, the final weights hash, and the ``MODEL_CODE_VERSION``
(trainer/versions.py, part of the result cache key) and torch/numpy versions it was recorded
under. Numbers that change while ``MODEL_CODE_VERSION`` does not would let the cache serve
results of the old code, so the mismatch message says to bump it.

Results are bit-identical on one hardware class only (``trainer.determinism.hardware_class``:
an Intel and an AMD CPU with the same instruction set differ in the last bits), so golden files
are kept per class. On a class with no recorded file a test compares against the reference
trained once on this machine instead (:func:`expected`): reproducibility is still checked, a
numerics change under an unchanged ``MODEL_CODE_VERSION`` is not, until the class's files are
recorded with the regenerate command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import TrainingResult, TrainingTask, load_task
from trainer.determinism import hardware_class
from trainer.versions import MODEL_CODE_VERSION

__all__ = ["FAULT_TOLERANCE", "HARDWARE", "INTERRUPTED", "METRICS", "PARAMETER_SERVER",
           "REFERENCES", "WS1", "WS2", "GoldenMismatch", "Numerics", "Reference", "check",
           "current", "expected", "mismatch", "record", "recorded", "run"]

GOLDEN_DIR = Path(__file__).resolve().parent
#: This machine's hardware class: the folder of the golden files that apply here.
HARDWARE = hardware_class()
REPO = GOLDEN_DIR.parents[1]
METRICS = ("train_loss", "val_loss", "val_accuracy")
REGENERATE = "python -m tests.golden.regenerate"


@dataclass(frozen=True)
class Reference:
    """A task (config + overrides) trained at ``world_size`` on CPU: world size 1 in-process
    (``trainer.train_local`` with one torch thread), more through Ray Train (``trainer.train``,
    result reuse off; each worker has one thread as ``cpus_per_worker: 1`` says)."""

    name: str
    config: str  # relative to the repository root
    world_size: int
    overrides: tuple[str, ...]

    @property
    def path(self) -> Path:
        """The golden file for this machine's hardware class (it may not exist)."""
        return GOLDEN_DIR / HARDWARE / f"{self.name}.json"

    @property
    def regenerate_command(self) -> str:
        return f"{REGENERATE} {self.name}"

    def task(self) -> TrainingTask:
        return load_task(REPO / self.config, self.overrides)


# the digits MLP example: all 15 epochs in-process (seconds); 3 epochs on 2 Ray Train workers
# (start-up dominates), the same run as tests/integration/test_job_submit.py's
WS1 = Reference("digits_mlp_ws1", "examples/digits_mlp.yaml", 1, ("resources.num_workers=1",))
WS2 = Reference("digits_mlp_ws2", "examples/digits_mlp.yaml", 2, ("training.epochs=3",))
# the task tests/integration/test_fault_tolerance.py kills nodes under: its uninterrupted weights
# (14 epochs on 2 Ray Train workers, about 25 s) are read from here rather than trained again
FAULT_TOLERANCE = Reference("digits_fault_tolerance_ws2",
                            "tests/golden/tasks/digits_fault_tolerance.yaml", 2, ())
# the DDP baseline of tests/integration/test_parameter_server.py (6 epochs on 2 workers)
PARAMETER_SERVER = Reference("digits_parameter_server_ws2",
                             "tests/golden/tasks/digits_parameter_server.yaml", 2, ())
# the task tests/integration/test_interrupts.py interrupts and resumes (one worker, 5 epochs)
INTERRUPTED = Reference("interrupted_ws1", "tests/golden/tasks/interrupted.yaml", 1, ())
REFERENCES = {r.name: r for r in (WS1, WS2, FAULT_TOLERANCE, PARAMETER_SERVER, INTERRUPTED)}


@dataclass(frozen=True)
class Numerics:
    """What a run must reproduce bit for bit."""

    seed: int
    epochs: tuple[tuple[tuple[str, float], ...], ...]  # per epoch: (metric, value) in METRICS order
    weights_hash: str

    @classmethod
    def of(cls, seed: int, history: list[dict[str, Any]], weights_hash: str) -> Numerics:
        return cls(seed, tuple(tuple((m, h[m]) for m in METRICS) for h in history), weights_hash)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Numerics:
        """From ``trainer.train_local``'s summary."""
        return cls.of(summary["seed"], summary["history"], summary["weights_hash"])

    @classmethod
    def from_result(cls, result: TrainingResult) -> Numerics:
        history = [{"train_loss": h.train_loss, **h.metrics} for h in result.history]
        return cls.of(result.seed, history, result.weights_hash)

    @classmethod
    def from_golden(cls, golden: dict[str, Any]) -> Numerics:
        history = [{k: v for k, v in e.items() if k != "epoch"} for e in golden["epochs"]]
        return cls.of(golden["seed"], history, golden["weights_hash"])

    def first_difference(self, other: Numerics) -> str | None:
        """Where ``other`` (a run) departs from ``self`` (the golden values), or None."""
        for i, (want, got) in enumerate(zip(self.epochs, other.epochs, strict=False), start=1):
            for (metric, a), (_, b) in zip(want, got, strict=True):
                if a != b:
                    return f"epoch {i} {metric}: golden {a!r}, this run {b!r}"
        if len(self.epochs) != len(other.epochs):
            return f"epochs: golden {len(self.epochs)}, this run {len(other.epochs)}"
        if self.seed != other.seed:
            return f"seed: golden {self.seed}, this run {other.seed}"
        if self.weights_hash != other.weights_hash:
            return f"final weights hash: golden {self.weights_hash}, this run {other.weights_hash}"
        return None


def versions() -> dict[str, str]:
    """Library versions whose numerics a run depends on (also in the cache key)."""
    return {"torch": torch.__version__, "numpy": np.__version__}


def run(reference: Reference, storage: Path) -> Numerics:
    """Train ``reference`` in ``storage``; world size 2+ needs Ray connected (or connects)."""
    from trainer import train, train_local

    task = reference.task()
    if reference.world_size == 1:
        # train_local runs with cpus_per_worker (here 1) torch threads, as a Ray worker does
        summary = train_local(task, storage_path=storage, device="cpu")
        return Numerics.from_summary(summary)
    assert task.resources.num_workers == reference.world_size, reference
    return Numerics.from_result(train(task, storage_path=storage, use_cache=False))


def record(reference: Reference, numerics: Numerics) -> dict[str, Any]:
    """The golden file's content for ``numerics``."""
    return {
        "config": reference.config,
        "overrides": list(reference.overrides),
        "world_size": reference.world_size,
        "device": "cpu",
        "hardware_class": HARDWARE,
        "model_code_version": MODEL_CODE_VERSION,
        "versions": versions(),
        "seed": numerics.seed,
        "epochs": [{"epoch": i, **dict(e)} for i, e in enumerate(numerics.epochs, start=1)],
        "weights_hash": numerics.weights_hash,
        "regenerate": reference.regenerate_command,
    }


def load(reference: Reference) -> dict[str, Any]:
    """The golden file for this machine's hardware class (FileNotFoundError without one)."""
    golden: dict[str, Any] = json.loads(reference.path.read_text())
    return golden


def recorded(reference: Reference) -> list[Path]:
    """The reference's golden files, one per hardware class it was recorded on."""
    return sorted(GOLDEN_DIR.glob(f"*/{reference.name}.json"))


_TRAINED_HERE: dict[str, dict[str, Any]] = {}


def expected(reference: Reference) -> dict[str, Any]:
    """What a run of ``reference`` on this machine must reproduce, as a golden file's content:
    the file of this hardware class, or, when none is recorded, the reference trained once
    on this machine now (kept for the rest of the session)."""
    if reference.path.exists():
        return load(reference)
    if reference.name not in _TRAINED_HERE:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mtp-golden-") as tmp:
            _TRAINED_HERE[reference.name] = record(reference, run(reference, Path(tmp)))
    return _TRAINED_HERE[reference.name]


def current(reference: Reference) -> dict[str, Any]:
    """The reference's numbers for a test that uses them instead of training the reference
    itself (:func:`expected`): a file recorded under another MODEL_CODE_VERSION is stale, and
    says so rather than "differs"."""
    golden = expected(reference)
    if golden["model_code_version"] != MODEL_CODE_VERSION:
        raise GoldenMismatch(f"{reference.path.name} was recorded under "
                             f"{golden['model_code_version']!r}, the code is "
                             f"{MODEL_CODE_VERSION!r}: regenerate it with "
                             f"{reference.regenerate_command}")
    return golden


class GoldenMismatch(AssertionError):
    """A run departs from its golden file; the message says what to do."""


def mismatch(reference: Reference, golden: dict[str, Any], observed: Numerics) -> str | None:
    """Why ``observed`` does not match ``golden`` and what to do about it, or None."""
    if (golden["config"], tuple(golden["overrides"]), golden["world_size"]) != (
            reference.config, reference.overrides, reference.world_size):
        return (f"{reference.path.name} was recorded for another task "
                f"({golden['config']} {golden['overrides']} at world size "
                f"{golden['world_size']}): regenerate it with {reference.regenerate_command}")
    diff = Numerics.from_golden(golden).first_difference(observed)
    recorded = golden["model_code_version"]
    if recorded != MODEL_CODE_VERSION:
        what = f"numerics changed ({diff})" if diff else "the numbers did not change"
        return (f"MODEL_CODE_VERSION is {MODEL_CODE_VERSION!r} but {reference.path.name} was "
                f"recorded under {recorded!r} ({what}): regenerate the golden file with "
                f"{reference.regenerate_command}")
    if diff is None:
        return None
    if golden["versions"] != versions():
        return (f"numerics changed ({diff}) under {versions()}, recorded under "
                f"{golden['versions']}: the cache key already includes the torch and numpy "
                f"versions; regenerate the golden file with {reference.regenerate_command} "
                "(and bump MODEL_CODE_VERSION in trainer/versions.py if platform code changed too)")
    return (f"numerics changed ({diff}): bump MODEL_CODE_VERSION in trainer/versions.py "
            f"(still {MODEL_CODE_VERSION!r}, so the result cache would serve results of the old "
            f"code) and regenerate the golden file with {reference.regenerate_command}")


def check(reference: Reference, observed: Numerics) -> None:
    """Raise :class:`GoldenMismatch` unless ``observed`` matches the golden file of this
    hardware class, or, without one, the reference trained on this machine."""
    __tracebackhide__ = True
    if reference.path.exists():
        problem = mismatch(reference, load(reference), observed)
    else:
        diff = Numerics.from_golden(expected(reference)).first_difference(observed)
        problem = None if diff is None else (
            f"a run differs from the same reference trained again on this machine ({diff}): "
            f"training is not reproducible here (hardware class {HARDWARE} has no golden "
            f"file; record its files with {REGENERATE})")
    if problem is not None:
        raise GoldenMismatch(f"{reference.name}: {problem}")
