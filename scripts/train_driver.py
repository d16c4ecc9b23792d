"""Example driver script: train one task with the Python API.

Locally (embedded Ray):
    python scripts/train_driver.py examples/digits_mlp.yaml

On a cluster, through the Ray Jobs API (the job's RAY_ADDRESS points the driver at the cluster):
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python scripts/train_driver.py examples/digits_mlp.yaml --storage-path /mnt/shared/mtp
"""

from __future__ import annotations

import argparse
import logging
import sys

import mtp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--storage-path", default=None)
    parser.add_argument("--run-name", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    try:
        task = mtp.load_task(args.config, args.set)
        result = mtp.train(
            task,
            storage_path=args.storage_path,
            run_name=args.run_name,
            on_epoch=lambda m: print(
                f"epoch {m['epoch']}: train_loss={m['train_loss']:.4f} "
                f"val_loss={m['val_loss']:.4f}", flush=True),
        )
    except mtp.InputError as err:  # the config, the data or the run directory is wrong
        print(f"error: {err}", file=sys.stderr)
        return 2
    except mtp.MtpError as err:  # every other error the platform raises
        print(f"training failed: {err}", file=sys.stderr)
        return 1
    print(f"final metrics: {result.final_metrics}")
    print(f"weights sha256: {result.weights_hash}")
    print(f"result: {result.run_dir}/result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
