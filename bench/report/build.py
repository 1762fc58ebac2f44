"""``cryoopt report RESULTS_DIR --out reports/NAME``: every figure and table from the records.

Writes, per problem label found: the convergence plot (Fig. 3 style), density
snapshots (Fig. 4 style, aligned with the alignment stored in each record),
FSC curves with a resolution table, and, across labels and seeds, a
performance profile; then the leaderboard as Markdown and as one static HTML
page (``index.html``, figures embedded, no server needed).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from problems.data.io import read_mrc

from bench.score.leaderboard import display_rows, rank, to_markdown
from bench.score.text import plain as safe_text
from bench.run.records import truth_name
from bench.score.metrics import apply_alignment
from . import figures
from .data import group_slug, load_runs


def _first_seed(metas: list[dict]) -> dict[str, dict]:
    chosen: dict[str, dict] = {}
    for m in sorted(metas, key=lambda m: (m["optimizer"], m["seed"], -m["evals"])):
        chosen.setdefault(m["optimizer"], m)
    return chosen


def snapshot_panels(metas: list[dict]) -> tuple[dict, list[str]]:
    """Aligned snapshot volumes of each optimizer's first-seed run: name -> {column: volume}."""
    panels, columns = {}, set()
    for name, meta in _first_seed(metas).items():
        base = Path(meta["meta_path"]).parent
        for tag, fname in meta.get("snapshots", {}).items():
            info = meta.get("fsc", {}).get(tag)
            if info is None or "rotation" not in info or not (base / fname).exists():
                continue
            vol = apply_alignment(read_mrc(base / fname)[0], info["rotation"], info["mirrored"], info["shift"])
            if meta.get("band_radius"):
                vol = display_filter(vol, meta["band_radius"])
            col = "final" if tag == "final" else f"{int(tag) // 1000}K"
            panels.setdefault(name, {})[col] = vol
            columns.add(col)
    order = sorted((c for c in columns if c != "final"), key=lambda c: int(c[:-1])) + (["final"] if "final" in columns else [])
    return panels, order


def display_filter(volume: np.ndarray, band_radius: float) -> np.ndarray:
    """Gaussian low-pass reaching 1/e at ``1.5 r_max``: shows the frequencies the objective sees,
    without the ringing of a sharp cut (pictures only; FSCs use the raw volumes)."""
    from scipy.ndimage import fourier_gaussian
    import scipy.fft
    sigma = volume.shape[0] / (2 * np.pi * 1.5 * band_radius) * np.sqrt(2)
    return np.real(scipy.fft.ifftn(fourier_gaussian(scipy.fft.fftn(volume), sigma))).astype(np.float32)


def fsc_table(metas: list[dict]) -> pd.DataFrame:
    """Final-density verdicts of each optimizer's first-seed run.

    FSC resolutions are Å inside the band or ``"beyond band"`` (the curve
    stays above the threshold up to ``r_max``: the data cannot tell);
    ``fsc_band_mean`` is the in-band FSC averaged over Fourier coefficients;
    ``suboptimality`` is ``f(x) - f_ref`` of the full training objective and
    ``test_nll_gap`` the test NLL minus the reference's (``cryoopt reference``).
    """
    rows = []
    for name, meta in _first_seed(metas).items():
        f = meta.get("fsc", {}).get("final")
        if f:
            opt = meta.get("optimality") or {}
            rows.append({"optimizer": name, "seed": meta["seed"], "evals": f.get("evals"),
                         "resolution_fsc_0.5_A": f["resolution_0.5"], "resolution_fsc_0.143_A": f["resolution_0.143"],
                         "aligned_correlation": f["correlation"], "mirrored": f["mirrored"],
                         "fsc_band_mean": f.get("fsc_band_mean", np.nan),
                         "train_objective": (meta.get("train_objective") or {}).get("final", np.nan),
                         "suboptimality": _num(opt.get("suboptimality")), "test_nll_gap": _num(opt.get("test_nll_gap")),
                         "score_nll": _num(meta.get("score_nll")),
                         "beat_reference": bool(opt.get("beat_reference", False))})
    return pd.DataFrame(rows)


def _num(value) -> float:
    return np.nan if value is None else float(value)


def profile_table(metas: list[dict], tau: float = 0.1) -> pd.DataFrame:
    """Evaluations each run needs to pass the Moré-Wild test ``f <= f_L + tau (f_0 - f_L)``.

    A case is a (problem, seed) pair; ``f_0`` is its initial test NLL and
    ``f_L`` the best test NLL any optimizer reached on it, so at least one
    run solves every case.
    """
    runs = []
    for m in metas:
        table = pd.read_parquet(Path(m["meta_path"]).with_suffix(".parquet"))
        runs.append((m["optimizer"], f"{m.get('group', m['problem_label'])}/seed{m['seed']}", table, m.get("n_train")))
    best = {}
    for _, case, t, _ in runs:
        best[case] = min(best.get(case, np.inf), t["test_nll"].min())
    rows = []
    for name, case, t, n_train in runs:
        target = best[case] + tau * (t["test_nll"].iloc[0] - best[case])
        hit = t[t["test_nll"] <= target]
        rows.append({"optimizer": name, "case": case, "evals": float(hit["evals"].iloc[0]) if len(hit) else np.inf,
                     "n_train": n_train})
    return pd.DataFrame(rows)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html_page(sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<section><h2>{html.escape(t)}</h2>\n{c}\n</section>" for t, c in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cryoopt leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:nth-child(2), td:nth-child(3), td:last-child {{ text-align: left; }}
tr.submitted {{ background: #fff6d5; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>cryoopt leaderboard</h1>
<p>Held-out test NLL of the cryo-EM MAP objective (Punjani &amp; Brubaker 2015) reached within a fixed
budget of per-image gradient evaluations; mean over seeds with bootstrap 95% confidence intervals.</p>
{body}
<script>
// lets a headless browser test confirm that every embedded figure decoded
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  document.body.dataset.imagesOk = String(imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0));
}});
</script>
</body></html>
"""


def _leaderboard_html(table: pd.DataFrame) -> str:
    """The leaderboard table as :func:`bench.score.leaderboard.display_rows` shows it (same columns as the Markdown)."""
    shown = display_rows(table, lambda text: safe_text(text, newlines=False))   # names from submitted code
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns) + "</tr>"
    rows = []
    for (_, r), submitted in zip(shown.iterrows(), table["submitted"]):
        cls = ' class="submitted"' if submitted else ""
        cells = "".join(f"<td>{html.escape(str(v).replace('**', '').replace('`', ''))}</td>" for v in r)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def build_report(results_dir: str | Path, out_dir: str | Path, progress: bool = True) -> list[Path]:
    """Build every report artefact; returns the files written."""
    results_dir, out = Path(results_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, metas = load_runs(results_dir)
    if not metas:
        raise FileNotFoundError(f"no run records under {results_dir}")
    written: list[Path] = []
    sections: list[tuple[str, str]] = []
    for label in sorted({m["problem_label"] for m in metas if "-validation" not in m["problem_label"]}):
        board = results_dir / "leaderboard" / label
        if board.exists() and any(board.glob("*.json")):       # entries are on the scored instance
            table = rank(results_dir, label)
            (out / f"leaderboard-{label}.md").write_text(to_markdown(table, label))
            table.to_csv(out / f"leaderboard-{label}.csv")
            written += [out / f"leaderboard-{label}.md", out / f"leaderboard-{label}.csv"]
            sections.append((f"Leaderboard: {label}", _leaderboard_html(table)))
    # one section per instance: the scored and the published instance are different data (own truth, own curves)
    groups = sorted({m["group"] for m in metas if "-validation" not in m["problem_label"]})
    for group in groups:
        lm = [m for m in metas if m["group"] == group]
        label, slug = lm[0]["problem_label"], group_slug(group)
        lr = rows[rows.group == group]
        refs = [m["reference_test_nll"] for m in lm if m.get("reference_test_nll") is not None]
        reference = refs[0] if refs else None
        conv = figures.save(figures.convergence(lr, f"{group}: test NLL vs gradient evaluations", reference),
                            out / f"convergence-{slug}")
        written += conv
        content = []
        content.append(_img(conv[0]))
        panels, columns = snapshot_panels(lm)
        truth_path = results_dir / label / truth_name(lm[0]["problem_hash"])
        if not truth_path.exists() and len({m["group"] for m in metas if m["problem_label"] == label}) == 1:
            truth_path = results_dir / label / "ground_truth.mrc"      # records from before per-instance truths
        truth = read_mrc(truth_path)[0] if truth_path.exists() else None
        radius = next((m["band_radius"] for m in lm if m.get("band_radius")), None)
        if truth is not None and radius:
            truth = display_filter(truth, radius)
        if panels:
            caption = f"{group}: densities (projections), aligned to the ground truth (the FSC's 6-DOF alignment)"
            snaps = figures.save(figures.snapshot_grid(panels, truth, columns, caption),
                                 out / f"snapshots-{slug}")
            written += snaps
            content.append(_img(snaps[0]))
            finals = {n: panels[n]["final"] for n in figures.order(panels) if "final" in panels[n]}
            if truth is not None:
                finals["ground truth"] = truth
            iso = figures.save(figures.isosurface_grid(finals, f"{group}: final densities, isosurface view"),
                               out / f"isosurface-{slug}")
            written += iso
            content.append(_img(iso[0]))
        fsc = fsc_table(lm)
        if len(fsc):
            pixel = next((m.get("pixel_size_angstrom") for m in lm if m.get("pixel_size_angstrom")), 1.0)
            finals = {m["optimizer"]: m["fsc"]["final"] for m in _first_seed(lm).values() if m.get("fsc", {}).get("final")}
            curves = figures.save(figures.fsc_curves(finals, pixel, f"{group}: FSC against the ground truth"),
                                  out / f"fsc-{slug}")
            fsc.to_csv(out / f"fsc-{slug}.csv", index=False)
            beat = sorted(fsc.optimizer[fsc.beat_reference])
            note = (f"\n\nReference optimum updated: {', '.join(beat)} ended below the stored reference "
                    "(suboptimality shown against the reference before the update).\n") if beat else "\n"
            (out / f"fsc-{slug}.md").write_text(fsc.to_markdown(index=False, floatfmt=".4g") + note)
            written += curves + [out / f"fsc-{slug}.csv", out / f"fsc-{slug}.md"]
            content += [_img(curves[0]), fsc.to_html(index=False, float_format=lambda v: f"{v:.4g}")]
            if beat:
                content.append(f"<p><strong>{html.escape(note.strip())}</strong></p>")
        sections.append((group, "\n".join(content)))
    prof = profile_table([m for m in metas if "-validation" not in m["problem_label"]])
    if len(prof) and np.isfinite(prof.evals).any():
        p = figures.save(figures.performance_profile(prof, "performance profile: evaluations to reach f_L + 0.1 (f_0 - f_L)"),
                         out / "performance-profile")
        prof.to_csv(out / "performance-profile.csv", index=False)
        written += p + [out / "performance-profile.csv"]
        sections.append(("Performance profile", _img(p[0])))
        if prof["n_train"].notna().all():
            d = figures.save(figures.data_profile(prof, "data profile: cases solved vs budget"),
                             out / "data-profile")
            written += d
            sections.append(("Data profile", _img(d[0])))
    page = out / "index.html"
    page.write_text(_html_page(sections))
    written.append(page)
    (out / "manifest.json").write_text(json.dumps([str(p.relative_to(out)) for p in written], indent=1))
    return written
