"""Batch prediction: ``mtp predict`` (Ray Data) against a plain single-process loop (issue 12).

The model: ``examples/preprocess.yaml`` (the churn MLP behind its data pipeline: imputation,
clipping, log, one-hot), trained once in this process (``--epochs``). The input: the churn
table's rows drawn ``--rows`` times (and ``--big-rows`` times), every number jittered so rows
are distinct, written as Parquet (row groups of 64k rows). Measured, each in its own process
so peak memory is its own:

(plain) ``python scripts/bench_predict.py --plain-loop RUN INPUT OUTPUT`` on the ``--rows``
    file: read it in
    batches of ``--batch-size`` rows with pyarrow, ``load_model(run).predict(batch)`` (the
    stored preprocessing, then the network, one torch thread), append the predictions to the
    output Parquet file. Rows per second and its peak RSS (VmHWM).
(mtp) ``mtp predict RUN --input INPUT --output OUTPUT --batch-size N`` with an embedded Ray:
    rows per second (wall time of the command, Ray's start included, and the scoring time it
    prints) and the **driver's** peak RSS, read from /proc every 0.2 s while it runs, on both
    files: the driver holds a few batches at a time, so its peak should not grow with the
    file.

The two outputs are compared row by row (equal predictions). On this machine (2 CPUs) mtp
predict runs one scoring actor (the other CPU reads the file); on a cluster the pool grows
with the CPUs.

Usage::

    python scripts/bench_predict.py [--rows 1000000] [--big-rows 4000000]
                                    [--batch-size 8192] [--json-out OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _memory_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak resident, shared pages included) and RssAnon (the process's own memory now;
    Ray's object store pages the driver reads are shared memory, counted in RssShmem)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssShmem"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def _run_watched(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """Run ``cmd``; its wall time, its memory peaks (MiB: VmHWM, and the highest RssAnon and
    RssShmem seen every 0.2 s) and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    peak: dict[str, float] = {"VmHWM": 0.0, "RssAnon": 0.0, "RssShmem": 0.0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for key, value in _memory_mib(proc.pid).items():
                peak[key] = max(peak[key], value)
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate(timeout=3600)
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak, out


def _train(storage: Path, epochs: int) -> str:
    from mtp_core.spec import load_task
    from trainer.api import Executor, train

    task = load_task(REPO / "examples" / "preprocess.yaml", [f"training.epochs={epochs}"])
    return train(task, storage_path=storage, use_cache=False,
                 executor=Executor.IN_PROCESS).run_dir


def _write_input(path: Path, rows: int) -> None:
    """The churn table's rows drawn ``rows`` times, every number jittered (seeded): distinct
    rows, so the file is as large as real data of its size (not a few repeated pages)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    base = pacsv.read_csv(REPO / "examples" / "data" / "churn.csv").drop(["churned"])
    rng = np.random.default_rng(0)
    chunk = 250_000
    with pq.ParquetWriter(path, base.schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            table = base.take(pa.array(rng.integers(0, base.num_rows, n)))
            for name in ("monthly_charge", "usage_gb"):
                col = table.column(name).to_numpy(zero_copy_only=False)
                noisy = np.round(col * rng.uniform(0.9, 1.1, n), 2)
                table = table.set_column(table.schema.get_field_index(name), name,
                                         pa.array(noisy, mask=np.isnan(noisy)))
            writer.write_table(table, row_group_size=65536)


def plain_loop(run: str, src: str, dst: str, batch_size: int) -> None:
    """The baseline, in this process: batches in, predictions appended to a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from trainer.export import load_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    predictor = load_model(run)
    rows = 0
    writer = None
    with pq.ParquetFile(src) as pf:
        for batch in pf.iter_batches(batch_size=batch_size):
            table = pa.Table.from_batches([batch])
            out = table.append_column("prediction", pa.array(predictor.predict(table).tolist()))
            if writer is None:
                writer = pq.ParquetWriter(dst, out.schema)
            writer.write_table(out)
            rows += table.num_rows
    if writer is not None:
        writer.close()
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--big-rows", type=int, default=4_000_000)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--json-out", default=None)
    p.add_argument("--plain-loop", nargs=3, metavar=("RUN", "INPUT", "OUTPUT"))
    args = p.parse_args()
    if args.plain_loop:
        run, src, dst = args.plain_loop
        plain_loop(run, src, dst, args.batch_size)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    mtp = str(Path(sys.executable).with_name("mtp"))
    with tempfile.TemporaryDirectory(prefix="mtp-bench-predict-") as tmp:
        root = Path(tmp)
        run = _train(root / "runs", args.epochs)
        figures: dict[str, Any] = {"batch_size": args.batch_size, "cpus": os.cpu_count()}
        for label, rows in (("rows", args.rows), ("big", args.big_rows)):
            src = root / f"input-{rows}.parquet"
            _write_input(src, rows)
            figures[f"{label}_input_mib"] = src.stat().st_size / 2**20
            out = root / f"mtp-{rows}.parquet"
            wall, peak, stdout = _run_watched(
                [mtp, "predict", run, "--input", str(src), "--output", str(out),
                 "--batch-size", str(args.batch_size)], env)
            scoring_s = float(stdout.split(" in ")[1].split("s ")[0])
            figures[f"mtp_{label}"] = {"rows": rows, "wall_s": wall, "scoring_s": scoring_s,
                                      "rows_per_s_wall": rows / wall,
                                      "rows_per_s_scoring": rows / scoring_s,
                                      "driver_peak_rss_mib": peak["VmHWM"],
                                      "driver_peak_anon_mib": peak["RssAnon"],
                                      "driver_peak_shmem_mib": peak["RssShmem"]}
            print(f"mtp predict   {rows:>9,} rows: wall {wall:6.1f}s ({rows / wall:>9,.0f} "
                  f"rows/s), scoring {scoring_s:6.1f}s ({rows / scoring_s:>9,.0f} rows/s), "
                  f"driver peak RSS {peak['VmHWM']:,.0f} MiB (own {peak['RssAnon']:,.0f}, "
                  f"object store pages {peak['RssShmem']:,.0f})", flush=True)
        src = root / f"input-{args.rows}.parquet"
        plain_out = root / "plain.parquet"
        wall, peak, stdout = _run_watched(
            [sys.executable, __file__, "--plain-loop", run, str(src), str(plain_out),
             "--batch-size", str(args.batch_size)], env)
        loop = json.loads(stdout.strip().splitlines()[-1])
        figures["plain_rows"] = {"rows": args.rows, "wall_s": wall, "loop_s": loop["seconds"],
                                  "rows_per_s_wall": args.rows / wall,
                                  "rows_per_s_loop": args.rows / loop["seconds"],
                                  "peak_rss_mib": peak["VmHWM"]}
        print(f"plain loop    {args.rows:>9,} rows: wall {wall:6.1f}s "
              f"({args.rows / wall:>9,.0f} rows/s), loop {loop['seconds']:6.1f}s "
              f"({args.rows / loop['seconds']:>9,.0f} rows/s), peak RSS {peak['VmHWM']:,.0f} MiB",
              flush=True)
        import pyarrow.parquet as pq

        a = pq.read_table(root / f"mtp-{args.rows}.parquet", columns=["prediction"])
        b = pq.read_table(plain_out, columns=["prediction"])
        figures["predictions_equal"] = a.column(0).to_pylist() == b.column(0).to_pylist()
        print(f"predictions equal row by row: {figures['predictions_equal']}")
    m, b = figures["mtp_rows"], figures["mtp_big"]
    plain = figures["plain_rows"]
    print(f"\nmtp predict / plain loop at {m['rows']:,} rows (rows/s): wall "
          f"{m['rows_per_s_wall'] / plain['rows_per_s_wall']:.2f}x, scoring "
          f"{m['rows_per_s_scoring'] / plain['rows_per_s_loop']:.2f}x; the driver's own memory "
          f"(RssAnon) at most {m['driver_peak_anon_mib']:,.0f} MiB at {m['rows']:,} rows, "
          f"{b['driver_peak_anon_mib']:,.0f} MiB at {b['rows']:,} rows (peak RSS with the "
          f"object store's shared pages {m['driver_peak_rss_mib']:,.0f} and "
          f"{b['driver_peak_rss_mib']:,.0f} MiB)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
