"""Matplotlib figures in the style of Punjani & Brubaker 2015 (Figs. 3, 4, 6) plus FSC and profiles."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .data import curves_on_grid  # noqa: E402

PAPER_ORDER = ["sgd", "adagrad", "momentum", "nesterov", "tonga", "olbfgs", "hessian-free"]


#: One colour per optimizer in every figure (tab10, then tab20's light shades); others by a stable hash.
COLOURS = {"sgd": "C0", "adagrad": "C1", "momentum": "C2", "nesterov": "C3", "tonga": "C4", "olbfgs": "C5",
           "hessian-free": "C6", "adam": "C7", "sagd": "C8", "hutchinson-sgd": "C9",
           "em": "#aec7e8", "projection-matching": "#ffbb78", "relion-3.1": "#98df8a"}


def colour(name: str):
    """The fixed colour of ``name`` (also ``"torch (RAdam)"`` style names: one per full name)."""
    if name in COLOURS:
        return COLOURS[name]
    import zlib
    return plt.cm.tab20b(zlib.crc32(name.encode()) % 20)


def legend_outside(ax, fig=None) -> None:
    """The legend right of the axes, where it covers no curve."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def order(names) -> list[str]:
    """The paper's seven first (in its order), then the rest alphabetically."""
    names = list(names)
    return [n for n in PAPER_ORDER if n in names] + sorted(n for n in names if n not in PAPER_ORDER)


def save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def convergence(rows: pd.DataFrame, title: str, reference: float | None = None) -> plt.Figure:
    """Held-out test NLL vs per-image gradient evaluations (log x): median over seeds, interquartile band,
    and a zoomed panel of the last decade (paper Fig. 3)."""
    lo, hi = rows.loc[rows.evals > 0, "evals"].min(), rows.evals.max()
    grid = np.geomspace(lo, hi, 200)
    curves = curves_on_grid(rows, grid)
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    finals, medians = [], []
    for i, name in enumerate(order(curves)):
        c = curves[name]
        if not np.isfinite(c).any():
            continue
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN columns past a run's end
            med = np.nanmedian(c, axis=0)
            c_lo, c_hi = np.nanpercentile(c, 25, axis=0), np.nanpercentile(c, 75, axis=0)
        color = colour(name)
        for a in (ax, zoom):
            a.plot(grid, med, label=name, color=color, lw=1.6)
            if c.shape[0] > 1:
                a.fill_between(grid, c_lo, c_hi, color=color, alpha=0.12, lw=0)
        finals.append(np.nanmin(med))
        medians.append(med)
    if reference is not None:
        for a in (ax, zoom):
            a.axhline(reference, color="k", ls=":", lw=1, label="ground truth")
    for a in (ax, zoom):
        a.set_xscale("log")
        a.set_xlabel("per-image gradient evaluations")
        a.grid(alpha=0.3, which="both")
    ax.set_ylabel("held-out test NLL (mean per image)")
    ax.set_title(title)
    zoom.set_xlim(hi / 10, hi)
    zoom.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if finals:
        top = max(finals) + 0.5 * (max(finals) - min(finals) + 0.2)
        bottom = min(min(finals), reference if reference is not None else np.inf) - 0.2
        zoom.set_ylim(bottom, top)
    zoom.set_title("last decade (zoom)")
    if medians:     # the medians set the scale; one diverging seed's band must not flatten the rest
        lo_y, hi_y = np.nanmin(medians), np.nanmax(medians)
        if reference is not None:
            lo_y = min(lo_y, reference)
        pad = 0.05 * (hi_y - lo_y + 1e-9)
        ax.set_ylim(lo_y - pad, hi_y + pad)
    # a zoom shows less than the main panel, never more: its y-range is clipped to the main panel's
    (main_lo, main_hi), (z_lo, z_hi) = ax.get_ylim(), zoom.get_ylim()
    z_lo, z_hi = max(z_lo, main_lo), min(z_hi, main_hi)
    if z_lo < z_hi:
        zoom.set_ylim(z_lo, z_hi)
    else:
        zoom.set_ylim(main_lo, main_hi)
    legend_outside(zoom)
    return fig


def projection(volume: np.ndarray) -> np.ndarray:
    return np.asarray(volume).sum(axis=0)


def snapshot_grid(panels: dict[str, dict[str, np.ndarray]], truth: np.ndarray | None, columns: list[str],
                  title: str) -> plt.Figure:
    """Projections along z of aligned densities: rows = optimizers, columns = snapshot points
    (paper Fig. 4); with a single column the optimizers are laid out in rows of up to seven."""
    names = order(panels)
    if len(columns) == 1:
        items = [(name, panels[name].get(columns[0])) for name in names]
        if truth is not None:
            items.append(("ground truth", truth))
        per_row = min(7, len(items))
        n_rows = -(-len(items) // per_row)
        fig, axes = plt.subplots(n_rows, per_row, figsize=(1.8 * per_row, 2.3 * n_rows + 0.4), squeeze=False)
        for a in axes.ravel():
            a.axis("off")
        for a, (name, vol) in zip(axes.ravel(), items):
            if vol is not None:
                a.imshow(projection(vol), cmap="gray", origin="lower")
            a.set_title(name, fontsize=9)
        fig.suptitle(title, fontsize=10)
        # the title above the panel labels; h_pad keeps each panel's label clear of the image above it
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()), h_pad=2.0)
        return fig
    n_rows = len(names) + (truth is not None)
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(1.9 * len(columns) + 1, 1.9 * n_rows), squeeze=False)
    for r, name in enumerate(names):
        for c, col in enumerate(columns):
            a = axes[r, c]
            a.set_xticks([]), a.set_yticks([])
            if col in panels[name]:
                a.imshow(projection(panels[name][col]), cmap="gray", origin="lower")
            else:
                a.text(0.5, 0.5, "n/a", ha="center", va="center", transform=a.transAxes)
            if r == 0:
                a.set_title(col, fontsize=9)
            if c == 0:
                a.set_ylabel(name, fontsize=9)
    if truth is not None:       # the ground truth sits in the last row, last column, in every figure
        for c in range(len(columns)):
            a = axes[-1, c]
            a.set_xticks([]), a.set_yticks([])
            if c == len(columns) - 1:
                a.imshow(projection(truth), cmap="gray", origin="lower")
                a.set_title("ground truth", fontsize=9)
            else:
                a.axis("off")
        axes[-1, 0].text(-0.1, 0.5, "ground truth", rotation=90, va="center", ha="right", fontsize=9,
                         transform=axes[-1, 0].transAxes)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def fsc_curves(fscs: dict[str, dict], pixel_size: float, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(order(fscs)):
        f = fscs[name]
        ax.plot(np.asarray(f["frequency"]) / pixel_size, f["fsc"], label=name, color=colour(name))
    for level in (0.5, 0.143):
        ax.axhline(level, color="k", ls=":", lw=0.8)
    limits = [f["band_limit_cycles_per_pixel"] for f in fscs.values() if f.get("band_limit_cycles_per_pixel")]
    if limits:      # beyond the band the data constrain nothing: shade it
        edge = limits[0] / pixel_size
        ax.axvspan(edge, ax.get_xlim()[1], color="0.9", zorder=0, label="beyond band")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC vs ground truth (aligned)")
    ax.set_ylim(-0.1, 1.02)
    ax.set_title(title)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


def _fraction_solved(values: pd.DataFrame, column: str, grid: np.ndarray, xlabel: str, title: str) -> plt.Figure:
    """Step plot of the fraction of each optimizer's cases with ``column <= grid`` (log x)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, grp) in enumerate(sorted(values.groupby("optimizer"))):
        v = grp[column].to_numpy()
        ax.step(grid, [(v <= g).mean() for g in grid], where="post", label=name, color=colour(name))
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of cases solved")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    legend_outside(ax)
    ax.grid(alpha=0.3, which="both")
    return fig


def performance_profile(evals_needed: pd.DataFrame, title: str) -> plt.Figure:
    """Dolan-Moré profile: fraction of (problem, seed) cases an optimizer solves within tau x the best.

    ``evals_needed``: columns optimizer, case, evals (inf when the target was never reached).
    """
    best = evals_needed.groupby("case")["evals"].transform("min")
    return _fraction_solved(evals_needed.assign(ratio=evals_needed["evals"] / best), "ratio",
                            np.geomspace(1, 100, 200), "tau (evaluations / best evaluations)", title)


def data_profile(evals_needed: pd.DataFrame, title: str) -> plt.Figure:
    """Moré-Wild data profile: fraction of cases solved within a budget of ``kappa`` epochs.

    ``evals_needed``: columns optimizer, case, evals, n_train (training images of the case).
    """
    epochs = evals_needed["evals"] / evals_needed["n_train"]
    finite = epochs[np.isfinite(epochs)]
    grid = np.geomspace(max(finite.min() / 2, 1e-3), max(finite.max() * 2, 1), 200)
    return _fraction_solved(evals_needed.assign(epochs=epochs), "epochs", grid,
                            "budget (epochs of per-image gradient evaluations)", title)


def _isosurface(ax, volume: np.ndarray, size: int, fraction: float, color: str) -> None:
    """Draw the smooth isosurface (scikit-image marching cubes, Lewiner et al. 2003) of ``volume``,
    Fourier-cropped to ``size``, at the level enclosing the ``fraction`` of its voxels with the
    largest values; faces are shaded by their normals against a fixed light (Lambert)."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes
    from bench.score.metrics import fourier_crop
    v = fourier_crop(np.asarray(volume, dtype=np.float64), size)
    level = float(np.quantile(v, 1.0 - fraction))
    if not v.min() < level < v.max():
        ax.text2D(0.5, 0.5, "flat", ha="center", transform=ax.transAxes)
        return
    verts, faces, normals, _ = marching_cubes(v.transpose(2, 1, 0), level)   # [z,y,x] -> (x,y,z)
    elev, azim = np.radians(20.0), np.radians(-60.0)
    light = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)]) + [0, 0, 0.5]
    light /= np.linalg.norm(light)                      # from the camera, a little above it
    shade = 0.3 + 0.7 * np.abs(normals[faces].mean(axis=1) @ light)
    rgb = np.asarray(matplotlib.colors.to_rgb(color))
    mesh = Poly3DCollection(verts[faces], facecolors=np.clip(shade[:, None] * rgb, 0, 1), edgecolor="none")
    mesh.set_rasterized(True)                           # thousands of polygons: keep the PDF small
    ax.add_collection3d(mesh)
    half = 0.35 * size                                  # the same frame for every map: sizes compare
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(size / 2 - half, size / 2 + half)
    ax.view_init(elev=np.degrees(elev), azim=np.degrees(azim))
    ax.set_box_aspect((1, 1, 1))


def isosurface_grid(volumes: dict[str, np.ndarray], title: str, size: int = 48, fraction: float = 0.04) -> plt.Figure:
    """Smooth isosurfaces of the given densities, laid out in rows of up to seven (see :func:`_isosurface`)."""
    names = list(volumes)
    per_row = min(7, len(names))
    n_rows = -(-len(names) // per_row)
    fig = plt.figure(figsize=(2.0 * per_row, 2.1 * n_rows + 0.4))
    for i, name in enumerate(names):
        ax = fig.add_subplot(n_rows, per_row, i + 1, projection="3d")
        ax.set_axis_off()
        _isosurface(ax, volumes[name], size, fraction, "#d9b44a")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.0, hspace=0.1, top=1 - 0.8 / fig.get_figheight())    # title clear of the labels
    return fig


def isosurface_table(panels: dict[str, dict[str, np.ndarray]], columns: list[str], title: str, size: int = 48,
                     fraction: float = 0.04) -> plt.Figure:
    """Smooth isosurfaces (paper Fig. 4): rows = densities (name -> {column: volume}), columns = snapshot
    points.  Each surface encloses the same ``fraction`` of the box, so maps on different intensity
    scales (RELION's, ours) are drawn alike."""
    if len(columns) == 1:           # one column: the panels in rows of up to seven, not one tall strip
        return isosurface_grid({name: vols[columns[0]] for name, vols in panels.items() if columns[0] in vols},
                               title, size, fraction)
    names = list(panels)
    fig = plt.figure(figsize=(2.1 * len(columns) + 0.6, 2.1 * len(names) + 0.4))
    for r, name in enumerate(names):
        for c, col in enumerate(columns):
            ax = fig.add_subplot(len(names), len(columns), r * len(columns) + c + 1, projection="3d")
            ax.set_axis_off()
            if col in panels[name]:
                _isosurface(ax, panels[name][col], size, fraction, "#d9b44a")
            if r == 0:
                ax.set_title(col, fontsize=9)
            if c == 0:
                ax.text2D(-0.05, 0.5, name, rotation=90, va="center", ha="right", fontsize=9, transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.0, hspace=0.05, top=1 - 0.8 / fig.get_figheight())   # title clear of the labels
    return fig


def central_slices(panels: dict[str, dict[str, np.ndarray]], columns: list[str], title: str) -> plt.Figure:
    """Central slices z = N/2 (rows = densities, columns = snapshot points), each on its own grey scale."""
    names = list(panels)
    fig, axes = plt.subplots(len(names), len(columns), figsize=(1.8 * len(columns) + 0.8, 1.8 * len(names) + 0.4),
                             squeeze=False)
    for r, name in enumerate(names):
        for c, col in enumerate(columns):
            a = axes[r, c]
            a.set_xticks([]), a.set_yticks([])
            vol = panels[name].get(col)
            if vol is not None:
                a.imshow(np.asarray(vol)[vol.shape[0] // 2], cmap="gray", origin="lower")
            if r == 0:
                a.set_title(col, fontsize=9)
            if c == 0:
                a.set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig
