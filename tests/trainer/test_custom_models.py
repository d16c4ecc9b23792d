"""Custom PyTorch models (``model.type: custom``) without Ray: found, hashed, checked, trained
in this process bit-identically, reloaded; every bad factory is one line naming it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtp.cli import main
from mtp_core.spec import CustomModel, load_task, parse_task
from tests.support.user_code import (
    custom_digits_task,
    fresh_user_code,  # noqa: F401 - the fixture below
    write_package,
)
from trainer import load_model, train_local
from trainer.errors import ConfigError
from trainer.prepare import identify
from trainer.user_code import UserCode, install, resolve

pytestmark = pytest.mark.usefixtures("fresh_user_code")


def test_the_code_is_found_beside_the_config_and_hashed(tmp_path: Path) -> None:
    write_package(tmp_path / "proj")
    cfg = tmp_path / "proj" / "task.yaml"
    raw = custom_digits_task(code_dir=tmp_path / "elsewhere")
    del raw["model"]["code_dir"]  # default: the config's folder
    cfg.write_text(yaml.safe_dump(raw))
    task = load_task(cfg)
    assert isinstance(task.model, CustomModel) and task.model.code_dir == cfg.parent.resolve()
    code = resolve(task.model)
    assert [rel for rel, _ in code.files] == ["user_nets/__init__.py", "user_nets/nets.py"]
    assert code.shipped and len(code.sha256) == 64
    assert "user_nets" not in {Path(p).name for p in sys.path}


def test_a_one_character_change_changes_the_cache_key_and_fingerprint(tmp_path: Path) -> None:
    write_package(tmp_path)
    task = parse_task(custom_digits_task(code_dir=tmp_path))
    before = identify(task)
    write_package(tmp_path, extra="#")
    after = identify(task)
    assert before.data_hash == after.data_hash
    assert before.model_code_sha256 != after.model_code_sha256
    assert before.cache_key != after.cache_key and before.fingerprint != after.fingerprint
    # where the code lives does not matter, only what it says
    write_package(tmp_path / "moved")
    moved = identify(parse_task(custom_digits_task(code_dir=tmp_path / "moved")))
    assert moved.cache_key == before.cache_key and moved.fingerprint == before.fingerprint


def test_install_imports_exactly_the_shipped_bytes(tmp_path: Path) -> None:
    """The factory comes from the code cache folder named by the hash, not from where the
    code was found; a new version of the same package replaces the old one."""
    write_package(tmp_path)
    spec = parse_task(custom_digits_task(code_dir=tmp_path)).model
    assert isinstance(spec, CustomModel)
    first = resolve(spec)
    build = install(first)
    assert str(tmp_path / "code-cache") in build.__code__.co_filename
    write_package(tmp_path, extra="\nVERSION = 2\n")
    second = resolve(spec)
    install(second)
    assert sys.modules["user_nets.nets"].VERSION == 2
    shipped = UserCode(first.factory, first.files, shipped=True)
    install(shipped)
    assert not hasattr(sys.modules["user_nets.nets"], "VERSION")


def test_a_custom_model_trains_and_reruns_bit_identically(tmp_path: Path) -> None:
    write_package(tmp_path / "code")
    task = parse_task(custom_digits_task(code_dir=tmp_path / "code"))
    a = train_local(task, storage_path=tmp_path / "a")
    b = train_local(task, storage_path=tmp_path / "b")
    assert a["history"][-1]["val_accuracy"] >= 0.9, a["history"][-1]
    assert a["weights_hash"] == b["weights_hash"]


def test_a_stored_custom_run_reloads_and_a_changed_source_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.api import Executor, train

    write_package(tmp_path / "code")
    task = parse_task(custom_digits_task(code_dir=tmp_path / "code", epochs=2))
    result = train(task, storage_path=tmp_path / "runs", executor=Executor.IN_PROCESS)
    assert result.versions["model_code_sha256"] == identify(task).model_code_sha256
    predictor = load_model(result.run_dir)
    from sklearn.datasets import load_digits

    x = load_digits().data[:5].astype(np.float32).reshape(5, 1, 8, 8)
    import torch

    assert predictor.module is not None
    assert predictor.module(torch.from_numpy(x)).shape == (5, 10)
    assert predictor.predict(x).shape == (5,)  # the predictor takes the same rows
    assert main(["show", str(result.run_dir)]) == 0
    assert (f"model code user_nets.nets:build  sha256 {result.versions['model_code_sha256']}"
            in capsys.readouterr().out)
    write_package(tmp_path / "code", extra="#")
    with pytest.raises(Exception, match="not the source this run was trained with"):
        load_model(result.run_dir)


BAD = [
    ("no_such_pkg.nets:build", "no module 'no_such_pkg'"),
    ("user_nets.nets:missing", "has no attribute 'missing'"),
    ("user_nets.nets:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a function"),
    ("user_nets.nets:not_a_module", "returned a str, not a torch.nn.Module"),
    ("user_nets.nets:wrong_width", "to (2, 11); expected (batch, 10)"),
    ("user_nets.nets:raises", "raised RuntimeError: the factory broke"),
]


@pytest.mark.parametrize(("factory", "words"), BAD, ids=[f for f, _ in BAD])
def test_a_bad_factory_exits_2_naming_it(tmp_path: Path, factory: str, words: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_package(tmp_path / "code")
    raw = custom_digits_task(code_dir=tmp_path / "code", factory=factory)
    raw["model"]["params"] = {}
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(raw))
    (tmp_path / "runs").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code = main(["run", str(cfg), "--storage-path", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("mtp: "), err
    assert f"model.factory={factory!r}" in err[0] and words in err[0], err
    assert "Traceback" not in "\n".join(err)
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert [p for p in after if not p.startswith("code-cache")] == before  # nothing written


@pytest.mark.parametrize(("model", "words"), [
    ({"factory": "no colon"}, "expected MODULE:FUNCTION"),
    ({"factory": "a.b:c", "params": {"num_outputs": 3}}, "num_outputs is given to the factory"),
])
def test_a_malformed_custom_model_is_a_config_error(model: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_task({**custom_digits_task(code_dir=Path("/tmp")),
                    "model": {"type": "custom", **model}})


def test_the_custom_model_example_trains(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLES

    task = load_task(EXAMPLES / "custom_model" / "digits_custom.yaml",
                     ["training.epochs=3", "resources.num_workers=1"])
    assert isinstance(task.model, CustomModel)
    assert task.model.code_dir == (EXAMPLES / "custom_model").resolve()
    summary = train_local(task, storage_path=tmp_path)
    assert summary["history"][-1]["val_accuracy"] >= 0.85, summary["history"][-1]


def test_the_time_series_example_trains_on_the_past_and_tests_on_the_future(
        tmp_path: Path) -> None:
    """A 1-D conv net of the user's over a loader's price series, split in time order."""
    from tests.conftest import EXAMPLES
    from trainer.api import Executor, train
    from trainer.report import data_report

    task = load_task(EXAMPLES / "custom_model" / "prices_conv1d.yaml",
                     ["resources.num_workers=1"])
    prepared = identify(task)
    dates = prepared.loaded.raw  # not preprocessed: the dates are not features
    assert dates is None and "date" not in prepared.dataset.feature_names
    report = data_report(prepared)
    assert report["splits"] == {"train": 2100, "validation": 450, "test": 450,
                                "how": "time order (dataset.order_by)"}
    assert prepared.split.test.min() == 2550 and prepared.split.train.max() == 2099
    result = train(task, storage_path=tmp_path, use_cache=False, executor=Executor.IN_PROCESS)
    # tomorrow's direction is a coin toss without the model; the momentum makes it 0.69 here
    assert result.test_metrics["test_accuracy"] >= 0.65, result.test_metrics
    assert result.versions["model_code_sha256"] == prepared.model_code_sha256


def test_a_cached_copy_edited_by_hand_is_written_again(tmp_path: Path) -> None:
    write_package(tmp_path / "code")
    spec = parse_task(custom_digits_task(code_dir=tmp_path / "code")).model
    assert isinstance(spec, CustomModel)
    code = resolve(spec)
    install(code)
    copy = next((tmp_path / "code-cache").iterdir()) / "user_nets" / "nets.py"
    copy.write_text(copy.read_text() + "\nTAMPERED = True\n")
    shipped = UserCode(code.factory, code.files, shipped=True, field=code.field)
    for name in [m for m in sys.modules if m.startswith("user_nets")]:
        del sys.modules[name]
    from trainer import user_code

    user_code._INSTALLED.clear()
    install(shipped)
    assert not hasattr(sys.modules["user_nets.nets"], "TAMPERED")
    assert "TAMPERED" not in copy.read_text()


def test_an_unwritable_code_cache_is_one_line_naming_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_package(tmp_path / "code")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MTP_CODE_CACHE", str(blocker / "cache"))
    spec = parse_task(custom_digits_task(code_dir=tmp_path / "code")).model
    assert isinstance(spec, CustomModel)
    from trainer import user_code

    user_code._INSTALLED.clear()
    with pytest.raises(ConfigError, match="set MTP_CODE_CACHE to a writable folder"):
        install(resolve(spec))
