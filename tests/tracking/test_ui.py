"""What a user sees in the MLflow UI, checked in a real headless browser: a run logged through
``mtp`` to a real ``mlflow server`` on loopback and registered as a model version, then the UI's
pages of that run and that version rendered by Debian's ``chromium`` (``--dump-dom``) and read
for the run's name, a parameter with its value, a metric with its last value, and the model's
name and version.

The MLflow UI is a React app (hash routes): the DOM ``--dump-dom`` prints is what the app
rendered within ``--virtual-time-budget`` (virtual time stands still while a request is in
flight, so the budget is not eaten by a slow server); a page that has not rendered everything
yet is rendered again with a larger budget, up to a deadline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mtp.models import register_run
from mtp_core.spec import parse_task
from tests.tracking.support import iris_tracked, running_mlflow_server, stop_group, tracking_on
from tracking.models import ModelVersion
from trainer.api import Executor, train
from trainer.result import TrainingResult

RUN_NAME = "iris-in-the-browser"
MODEL = "iris-browser-model"
EPOCHS = 3
#: virtual milliseconds the app may run per try, and the wall-clock bound of all tries of a page
BUDGETS_MS = (10_000, 30_000, 60_000)
PAGE_DEADLINE_S = 240.0


def chromium() -> str:
    """Debian's chromium. Missing: a failure in CI (.ci/run installs it and sets
    MTP_TEST_REQUIRE_BROWSER), a skip naming the package elsewhere (pip cannot install it)."""
    found = shutil.which("chromium")
    if found is None:
        message = ("Debian's chromium is not installed; `apt-get install -y chromium` "
                   "(CI installs it when missing: .ci/run)")
        if os.environ.get("MTP_TEST_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Ui:
    base: str
    result: TrainingResult
    version: ModelVersion
    workdir: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """A server, one tracked iris run on it, that run registered as version 1 of MODEL."""
    chromium()  # fail before the server and the training when there is no browser
    work = tmp_path_factory.mktemp("ui")
    storage = work / "storage"
    with running_mlflow_server(work) as base, pytest.MonkeyPatch.context() as mp:
        tracking_on(mp)
        raw = iris_tracked(RUN_NAME, epochs=EPOCHS, uri=base, experiment="browser")
        raw["training"]["learning_rate"] = 0.05
        result = train(parse_task(raw), storage_path=storage, executor=Executor.IN_PROCESS)
        version = register_run(result.run_dir, MODEL, storage=storage, tracking_uri=base)
        yield Ui(base=base, result=result, version=version, workdir=work)


_HIDDEN = ("script", "style", "noscript")  # noscript: "You need to enable JavaScript..."


class _Text(HTMLParser):
    """The text a user can read: every text node outside script/style, one space apart."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return " ".join(parser.parts)


def dump_dom(url: str, profile: Path, budget_ms: int, timeout_s: float) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time in headless chromium; the browser
    and every process it started are ended when it is done or after ``timeout_s``."""
    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", "--window-size=1600,2000",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish {url} within {timeout_s:.0f} s")
    finally:
        stop_group(proc)
    assert proc.returncode == 0, f"chromium exit {proc.returncode}: {err.decode()[-2000:]}"
    return out.decode()


def rendered(url: str, wanted: list[str], profile: Path) -> str:
    """The page's visible text once it shows every string in ``wanted`` (a larger budget per
    try); fails naming what never appeared."""
    deadline = time.monotonic() + PAGE_DEADLINE_S
    text = ""
    for budget in BUDGETS_MS:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        text = visible_text(dump_dom(url, profile, budget, timeout_s=left))
        missing = [w for w in wanted if w not in text]
        if not missing:
            return text
    pytest.fail(f"{url} never showed {missing!r} (last try, {budget} ms of virtual time): "
                f"{text[:3000]!r}")


def test_the_run_page_shows_the_runs_name_parameters_metrics_and_model(ui: Ui) -> None:
    r = ui.result
    assert r.tracking is not None and r.tracking.uri == ui.base
    last_val_loss = r.history[-1].metrics["val_loss"]
    url = f"{ui.base}/#/experiments/{r.tracking.experiment_id}/runs/{r.tracking.run_id}"
    text = rendered(url, [
        RUN_NAME,
        "training.learning_rate 0.05",  # a parameter and its value, side by side
        f"training.epochs {EPOCHS}",
        "dataset.name iris",
        f"val_loss {last_val_loss!r}",  # a metric and its last epoch's value
        "best_epoch",
        MODEL,  # the run page links the model version registered from it
    ], ui.workdir / "chromium-run")
    assert text.index("training.learning_rate") > text.index(RUN_NAME)


def test_the_model_version_page_shows_the_version_and_its_source_run(ui: Ui) -> None:
    v = ui.version
    assert (v.name, v.version) == (MODEL, 1)
    assert v.run_id is not None and ui.result.tracking is not None
    assert v.run_id == ui.result.tracking.run_id
    text = rendered(f"{ui.base}/#/models/{MODEL}/versions/1", [
        MODEL,
        "Version 1",
        RUN_NAME,  # "Source Run", a link to the run
        "mtp.weights_hash",  # the version's tags, as the platform wrote them
        ui.result.weights_hash,
    ], ui.workdir / "chromium-model")
    assert text.index(MODEL) < text.index("Version 1")
