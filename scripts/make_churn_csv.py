"""Write examples/data/churn.csv: a synthetic customer-churn table with missing values and
text columns, for examples/preprocess.yaml (``python scripts/make_churn_csv.py``; seeded, so
the file it writes is the one checked in)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "examples" / "data" / "churn.csv"
PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]


def main() -> None:
    rng = np.random.default_rng(42)
    rows = []
    for _ in range(600):
        plan = PLANS[rng.choice(3, p=[0.5, 0.3, 0.2])]
        region = REGIONS[rng.integers(4)]
        tenure = int(rng.integers(1, 72))
        monthly = {"basic": 20, "standard": 45, "premium": 80}[plan] + rng.normal(0, 5)
        support = int(rng.poisson(1.5))
        usage = float(rng.lognormal(3, 1))
        logit = (-1.5 + 1.1 * support - 0.07 * tenure + (1.6 if plan == "basic" else 0.0)
                 - 0.01 * usage + (0.9 if region == "south" else 0.0))
        churn = rng.random() < 1 / (1 + np.exp(-logit))
        row: dict[str, object] = {
            "tenure_months": tenure, "plan": plan, "region": region,
            "monthly_charge": round(monthly, 2), "support_calls": support,
            "usage_gb": round(usage, 2), "churned": "yes" if churn else "no"}
        # missing values: about 8% of monthly_charge and usage_gb, 5% of region
        for col, p in (("monthly_charge", 0.08), ("usage_gb", 0.08), ("region", 0.05)):
            if rng.random() < p:
                row[col] = ""
        rows.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{OUT}: {len(rows)} rows, {sum(r['churned'] == 'yes' for r in rows)} churned")


if __name__ == "__main__":
    main()
