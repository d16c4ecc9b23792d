"""The floor under any Ray Train run: ``TorchTrainer.fit()`` of a function that only reports
once, on a running Ray (``--address``), ``--runs`` times in one driver; prints one JSON line
``{"plain": [s, ...], "lean": [s, ...]}`` (Ray Train's own ``TorchTrainer`` and the platform's
``LeanTorchTrainer``, interleaved). Used by scripts/bench_startup.py, section (c).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence


def _report() -> None:
    import ray.train

    ray.train.report({"pid": os.getpid()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from mtp_core.ray_env import apply_train_env, own_cluster_options
    from trainer._ray_train import LeanTorchTrainer

    apply_train_env()
    ray.init(address=args.address, logging_level="ERROR",
             **own_cluster_options(args.address, embedded=False))
    times: dict[str, list[float]] = {"plain": [], "lean": []}
    for _ in range(args.runs):
        for name, cls in (("plain", TorchTrainer), ("lean", LeanTorchTrainer)):
            t0 = time.perf_counter()
            cls(_report, scaling_config=ScalingConfig(num_workers=args.workers)).fit()
            times[name].append(time.perf_counter() - t0)
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
