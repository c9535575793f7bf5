"""Two collected studies agree within seed noise (issue 14, target 5: the quick-start on
CUDA against its CPU results): for every run, the final training and test loss averaged
over seeds differ by at most 2 standard deviations of the seed-to-seed spread (the larger
of the two files'); also path barriers when present. Exit 1 if any does not.

    .venv/bin/python bench/compare_nc.py A.nc B.nc
"""
from __future__ import annotations

import sys

import numpy as np
import xarray as xr


def main(a_path: str, b_path: str) -> int:
    a, b = xr.open_dataset(a_path), xr.open_dataset(b_path)
    bad = 0
    pairs = [(v, "run") for v in ("final_train_loss", "final_test_loss")] + [("path_barrier", "path")]
    for var, dim in pairs:
        if var not in a or var not in b:
            continue
        for name in a[dim].values:
            x, y = a[var].sel({dim: name}).values.ravel(), b[var].sel({dim: name}).values.ravel()
            x, y = x[~np.isnan(x)], y[~np.isnan(y)]
            if len(x) < 2 or len(y) < 2:
                continue
            noise = max(x.std(ddof=1), y.std(ddof=1))
            diff = abs(x.mean() - y.mean())
            ok = diff <= 2 * noise
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {var:18s} {name:20s} {x.mean():.4f} vs {y.mean():.4f} "
                  f"(|diff| {diff:.4f}, seed sd {noise:.4f}, n={len(x)}/{len(y)})")
    print("within seed noise" if not bad else f"{bad} quantities differ by more than 2 seed sd")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: compare_nc.py A.nc B.nc")
    sys.exit(main(*sys.argv[1:]))
