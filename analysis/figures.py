"""The paper's figures from a collected Dataset (matplotlib, Agg backend, small PNGs).

- curves: training curves per run (train loss, test accuracy), mean over seeds with a min-max band
- paths: loss along each path (train solid, test dashed), mean over seeds with a min-max band
- barriers: the barrier of every path, one dot per seed; sparse vs dense curves side by side
- claims: every decided claim, its per-seed effects and intervals against its margin
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .roles import path_roles


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, x, da, label, color=None, style="-"):
    """Mean line and min-max band over the seed dim (if any)."""
    if "seed" in da.dims:
        vals = da.transpose("seed", ...).values
        ok = ~np.isnan(vals).all(axis=0)
        mean = np.nanmean(vals[:, ok], axis=0)
        line, = ax.plot(x[ok], mean, style, label=label, color=color, lw=1.5)
        if vals.shape[0] > 1:
            ax.fill_between(x[ok], np.nanmin(vals[:, ok], axis=0), np.nanmax(vals[:, ok], axis=0),
                            color=line.get_color(), alpha=0.2, lw=0)
    else:
        vals = da.values
        ok = ~np.isnan(vals)
        line, = ax.plot(x[ok], vals[ok], style, label=label, color=color, lw=1.5)
    return line


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    _plt().close(fig)
    return path


def curves(at, path: Path, title: str = "") -> Path | None:
    if "train_loss" not in at:
        return None
    plt = _plt()
    panels = [v for v in ("train_loss", "test_acc") if v in at]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    x = at["step"].values
    for ax, var in zip(axes[0], panels):
        for run in at["run"].values:
            da = at[var].sel(run=run)
            if not np.isnan(da.values).all():
                _band(ax, x, da, str(run))
        ax.set_xlabel("step")
        ax.set_ylabel(at[var].attrs.get("long_name", var).split(" (")[0])
        if var == "train_loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"training curves {title}".strip() + " (mean, band = min-max over seeds)", fontsize=10)
    return _save(fig, path)


def paths(at, path: Path, title: str = "") -> Path | None:
    if "path_train_loss" not in at:
        return None
    plt = _plt()
    names = [str(p) for p in at["path"].values]
    roles = path_roles(at)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False, sharey=True)
    x = at["t"].values
    for ax, name in zip(axes[0], names):
        line = _band(ax, x, at["path_train_loss"].sel(path=name), "train loss")
        if "path_test_loss" in at:
            _band(ax, x, at["path_test_loss"].sel(path=name), "test loss", color=line.get_color(), style="--")
        for t in (0.0, 1.0):
            ax.axvline(t, color="grey", lw=0.8, alpha=0.6)
        r = roles.get(name)
        sub = f"{r.start} -> {r.end}" if r and r.start != "?.?" else ""
        exp = f" [{r.experiment}]" if r and r.experiment != "other" else ""
        ax.set_title(f"{name}{exp}\n{sub}", fontsize=9)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (nats)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"loss along each path {title}".strip(), fontsize=10, y=1.06)
    return _save(fig, path)


def barriers(at, path: Path, title: str = "") -> Path | None:
    if "path_barrier" not in at:
        return None
    plt = _plt()
    roles = path_roles(at)
    names = [str(p) for p in at["path"].values]
    # curves: sparse before dense, so the E3/E4 comparison sits side by side
    order = sorted(names, key=lambda n: ({"E1": 0, "E2": 1, "E3": 2, "E4": 3}.get(roles[n].experiment, 4), n))
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names)), 3.2))
    for i, name in enumerate(order):
        b = np.atleast_1d(at["path_barrier"].sel(path=name).values.astype(float))
        r = roles[name]
        color = {"sparse": "tab:red", "dense": "tab:green"}.get(r.subspace or "", "tab:blue")
        ax.bar(i, np.nanmean(b) if not np.isnan(b).all() else 0, color=color, alpha=0.5)
        ax.plot(np.full(len(b), i), b, "o", color=color, ms=4)
    labels = [f"{n}\n{roles[n].kind}" + (f" {roles[n].subspace}" if roles[n].subspace else "") for n in order]
    ax.set_xticks(range(len(order)), labels, fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("barrier (nats)")
    has_curves = any(roles[n].subspace for n in names)
    ax.set_title(("sparse vs dense curve barriers" if has_curves else "barrier of each path")
                 + f" {title}".rstrip() + "\n(bar = mean, dots = seeds)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def claims(decided, path: Path, title: str = "") -> Path | None:
    """One row per decision: the per-seed effects (dots), the 95% t interval (thin bar) and the
    interval at its Holm level (thick bar), all minus the claim's margin, so the margin is the
    line at 0 (units: each claim's metric); colour = decision."""
    rows = [d for d in decided if d.effect.n]
    if not rows:
        return None
    plt = _plt()
    colors = {"holds": "tab:green", "does not hold": "tab:red", "undecided": "tab:gray"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for i, d in enumerate(reversed(rows)):
        e, c = d.effect, colors.get(d.effect.decision, "black")
        thr = e.threshold
        ax.plot(np.asarray(e.values) - thr, [i] * e.n, "o", ms=3, color=c, alpha=0.6)
        if e.n >= 2:
            ax.plot([e.ci95[0] - thr, e.ci95[1] - thr], [i, i], "-", lw=1, color=c)
            ax.plot([e.ci[0] - thr, e.ci[1] - thr], [i, i], "-", lw=4, color=c, alpha=0.5)
        ax.plot([e.mean - thr], [i], "|", ms=10, color="black")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{d.claim}" + (f" ({d.where})" if d.where else "") + f" {'>' if d.effect.side == '>' else '<'}"
                        for d in reversed(rows)], fontsize=8)
    ax.set_xlabel("effect minus margin (claimed side: > 0 or < 0 as marked; metric units)")
    ax.set_title(("claims " + title).strip() + ": green holds, red does not, grey undecided", fontsize=9)
    return _save(fig, path)
