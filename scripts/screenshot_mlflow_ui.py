"""The README's picture of the MLflow UI: real ``mtp`` runs on a real ``mlflow server``, taken by
Debian's headless ``chromium``.

1. ``mlflow server`` on a free loopback port, its SQLite store and artifacts in a temporary
   folder (removed at the end, the server and its process group stopped).
2. ``examples/digits_mlp.yaml`` trained once per ``--learning-rates`` value (``--epochs`` epochs,
   one worker, in this process), each an MLflow run ``digits-mlp-lr<rate>`` in the experiment
   ``digits-mlp`` of that server.
3. ``chromium --headless --screenshot`` of the experiment's runs page in chart view, the charts
   whose name has ``--charts`` in it (default: the losses; every run's curve over the epochs), at
   ``--window-size``. The chart filter is MLflow's own "shared view" (an experiment tag
   ``mlflow.sharedViewState.<key>`` and ``viewStateShareKey=<key>`` in the URL), as a user would
   share it. The browser reaches the server as ``mtp-mlflow-ui.test`` (mapped to 127.0.0.1,
   allowed by ``--allowed-hosts`` and ``--cors-allowed-origins``): the UI opens its assistant
   panel only on localhost, and the panel would cover a third of the picture.

Usage::

    python scripts/screenshot_mlflow_ui.py [--out docs/images/mlflow-ui.png] [--epochs 5]
        [--learning-rates 0.0003,0.002,0.02] [--charts loss] [--window-size 1600,1000]

Needs ``chromium`` (``apt-get install -y chromium``). Takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's packages, whatever an older install maps
MLFLOW = Path(sys.executable).with_name("mlflow")
EXPERIMENT = "digits-mlp"
HOST = "mtp-mlflow-ui.test"  # the name the browser uses for the loopback server
SHARE_KEY = "mtp-readme"

logger = logging.getLogger("screenshot_mlflow_ui")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
            return bool(resp.read() == b"OK")
    except (urllib.error.URLError, OSError):
        return False


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def mlflow_server(workdir: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """A loopback ``mlflow server`` over ``workdir``; yields its base URL once ``/health``
    answers (within ``timeout_s``), and stops its whole process group at the end."""
    port = _free_port()
    log_path = workdir / "mlflow-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
             "--artifacts-destination", str(workdir / "artifacts"),
             "--allowed-hosts", f"127.0.0.1:{port},localhost:{port},{HOST}:{port}",
             "--cors-allowed-origins", f"http://{HOST}:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # no job runner (GenAI judges): eight more processes the picture does not need
            env={**os.environ, "MLFLOW_TRACKING_URI": "",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(base):
                if proc.poll() is not None:
                    raise RuntimeError(f"mlflow server exited {proc.returncode}: "
                                       f"{log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server not up on {base} after {timeout_s:g} s")
                time.sleep(0.5)
            yield base
        finally:
            _stop_group(proc)


def train_runs(base: str, storage: Path, epochs: int, rates: list[float]) -> str:
    """One tracked digits MLP run per learning rate; returns the experiment's id."""
    os.environ["MTP_TRACKING"] = "on"
    import mtp
    from trainer.api import Executor, train

    experiment_id = ""
    for rate in rates:
        task = mtp.load_task(REPO / "examples" / "digits_mlp.yaml", overrides=[
            f"training.epochs={epochs}", f"training.learning_rate={rate}",
            "resources.num_workers=1", f"tracking.uri={base}",
            f"tracking.experiment={EXPERIMENT}"])
        result = train(task, storage_path=storage, run_name=f"digits-mlp-lr{rate:g}",
                       executor=Executor.IN_PROCESS)
        assert result.tracking is not None, "tracking is off"
        experiment_id = result.tracking.experiment_id
        logger.info("%s: val_accuracy %.4f after %d epochs", result.run_name,
                    result.final_metrics["val_accuracy"], result.epochs_completed)
    return experiment_id


def share_chart_view(base: str, experiment_id: str, charts: str) -> str:
    """A shared view of the experiment's runs page whose charts are those matching ``charts``;
    returns the page's URL for a browser that calls the server ``HOST``."""
    from mlflow import MlflowClient

    MlflowClient(base).set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{SHARE_KEY}",
                                          json.dumps({"chartsSearchFilter": charts}))
    port = base.rsplit(":", 1)[1]
    return (f"http://{HOST}:{port}/#/experiments/{experiment_id}/runs"
            f"?compareRunsMode=CHART&viewStateShareKey={SHARE_KEY}")


def screenshot(url: str, out: Path, window: str, profile: Path, wanted: list[str],
               budgets_ms: tuple[int, ...] = (60_000, 120_000, 240_000),
               timeout_s: float = 300.0) -> None:
    """``url`` as headless chromium draws it (``HOST`` resolves to 127.0.0.1), once the page
    shows every string in ``wanted`` and its charts are drawn: the DOM is dumped with the
    picture, and a page still loading (the charts' library is fetched late) is taken again
    with more virtual time, within ``timeout_s`` in all."""
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    missing: list[str] = []
    for budget in budgets_ms:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        out.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--host-resolver-rules=MAP {HOST} 127.0.0.1", f"--window-size={window}",
             f"--virtual-time-budget={budget}", f"--screenshot={out}", "--dump-dom", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            dom, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            break
        finally:
            _stop_group(proc)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"chromium exit {proc.returncode}: {err.decode()[-2000:]}")
        text = dom.decode()
        missing = [w for w in wanted if w not in text]
        if 'class="main-svg"' not in text:  # a plotly chart drawn
            missing.append("a drawn chart")
        if not missing:
            return
        logger.info("%d ms of virtual time: the page still lacks %s", budget, missing)
    raise RuntimeError(f"{url} did not show {missing or wanted} within {timeout_s:g} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "mlflow-ui.png")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--learning-rates", default="0.0003,0.002,0.02")
    p.add_argument("--charts", default="loss", help="show the charts whose name has this")
    p.add_argument("--window-size", default="1600,1000")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rates = [float(r) for r in args.learning_rates.split(",")]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="mtp-mlflow-ui-") as tmp:
        work = Path(tmp)
        with mlflow_server(work) as base:
            experiment_id = train_runs(base, work / "storage", args.epochs, rates)
            url = share_chart_view(base, experiment_id, args.charts)
            screenshot(url, args.out.resolve(), args.window_size, work / "chromium",
                       wanted=[f"digits-mlp-lr{r:g}" for r in rates])
    logger.info("wrote %s (%s)", args.out, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
