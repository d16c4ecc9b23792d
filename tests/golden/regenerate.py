"""Rewrite golden files from the current code: ``python -m tests.golden.regenerate [NAME ...]``.

Run from the repository root. Without names, every reference (see tests/golden/reference.py);
world sizes above 1 start a local Ray. The files are written for this machine's hardware class
(``tests/golden/<hardware class>/``); those of other classes are left as they are. A file
whose numbers would change while both MODEL_CODE_VERSION (trainer/versions.py) and the
torch/numpy versions stay as recorded is not rewritten: bump MODEL_CODE_VERSION first, so
cached results of the old code are not served (``--force`` rewrites anyway, for a change you
know no cached result depends on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtp_core.atomic import atomic_write_text
from tests.golden.reference import (
    REFERENCES,
    Numerics,
    Reference,
    load,
    record,
    run,
    versions,
)
from trainer.versions import MODEL_CODE_VERSION


def refusal(reference: Reference, golden: dict[str, Any] | None,
            observed: Numerics) -> str | None:
    """Why ``golden`` (the file as it is, None if absent) must not be replaced by ``observed``,
    or None."""
    if golden is None:
        return None
    if golden["model_code_version"] != MODEL_CODE_VERSION or golden["versions"] != versions():
        return None
    diff = Numerics.from_golden(golden).first_difference(observed)
    if diff is None:
        return None
    return (f"{reference.name}: numerics changed ({diff}) but MODEL_CODE_VERSION is still "
            f"{MODEL_CODE_VERSION!r}: bump it in trainer/versions.py first (or pass --force)")


def regenerate(reference: Reference, force: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="mtp-golden-") as tmp:
        observed = run(reference, Path(tmp))
    golden = load(reference) if reference.path.exists() else None
    problem = None if force else refusal(reference, golden, observed)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    reference.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(reference.path, json.dumps(record(reference, observed), indent=1) + "\n")
    print(f"{reference.path}: {len(observed.epochs)} epochs, weights {observed.weights_hash}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"references to regenerate (default all: {', '.join(REFERENCES)})")
    p.add_argument("--force", action="store_true",
                   help="rewrite even if the numbers change under the same MODEL_CODE_VERSION")
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(REFERENCES))
    if unknown:
        p.error(f"unknown references {unknown}; allowed: {', '.join(REFERENCES)}")
    logging.basicConfig(level=logging.WARNING)
    chosen = [REFERENCES[n] for n in args.names or REFERENCES]
    if any(r.world_size > 1 for r in chosen):
        from trainer import connect

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        connect()
    return max(regenerate(r, args.force) for r in chosen)


if __name__ == "__main__":
    raise SystemExit(main())
