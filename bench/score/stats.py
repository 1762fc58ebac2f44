"""Paired statistics for rankings: which rank differences the data resolve.

Two leaderboard entries on one problem label are compared on what they
share: the same seeds (one instance; for a seed, the same initial density
and batch order) and the same held-out images.  With matched seeds
``s = 1..S`` and images ``i = 1..I``, the per-image differences of the final
densities' NLLs are

    d_si = NLL_A(s, i) - NLL_B(s, i),      Delta = mean_si d_si

(the scoring split when the records carry it -- more images, finer
resolution -- else the paper's test images; records without per-image NLLs
fall back to the per-seed final test NLLs, ``I = 1``).

* 95% interval and p-value: a crossed random-effects analysis (seeds and
  images both random, :func:`crossed_interval`), so the optimizer's
  randomness and the finite held-out set both count.  (A plain bootstrap
  over 3 seeds underestimates the seed variance -- 11 of 40 false
  discoveries in a null simulation -- and an image-level test alone ignores
  it; the t interval with Satterthwaite's degrees of freedom does not.)
* Also shown: the Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``)
  on the per-image differences averaged over seeds.
* A difference is *significant* when its Holm-adjusted p-value (over the
  comparisons shown) is below ``alpha``; the interval then excludes 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t
from scipy.stats import wilcoxon

ALPHA = 0.05


def run_outcome(results_dir: str | Path, run: dict) -> dict | None:
    """What a leaderboard run contributes: per-image NLLs (scoring split preferred) and scalar scores."""
    if run.get("status") not in ("finished", "diverged") or not run.get("record"):
        return None
    path = Path(results_dir) / run["record"]
    try:
        meta = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a run record ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a run record (not a JSON object)")
    for key in ("score_nll_per_image", "test_nll_per_image"):
        if meta.get(key) is not None and not (isinstance(meta[key], list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in meta[key])):
            raise ValueError(f"{path}: field {key!r}: expected a list of numbers")
    if not isinstance(meta.get("score_nll") or 0.0, (int, float)) or not isinstance(meta.get("optimality") or {}, dict):
        raise ValueError(f"{path}: field 'score_nll' or 'optimality' has the wrong type")
    final = run.get("final_test_nll")
    out = {"seed": run["seed"], "final_test_nll": np.inf if final is None else float(final),
           "score_nll": meta.get("score_nll"), "optimality": meta.get("optimality") or {}}
    for key, basis in (("score_nll_per_image", "scoring images"), ("test_nll_per_image", "test images")):
        if meta.get(key) and np.isfinite(out["final_test_nll"]):
            out["per_image"], out["basis"] = np.asarray(meta[key], dtype=float), basis
            break
    return out


def entry_outcomes(results_dir: str | Path, entry: dict) -> dict[int, dict]:
    """Seed -> :func:`run_outcome` for every usable run of an entry."""
    outcomes = (run_outcome(results_dir, r) for r in entry.get("runs", []))
    return {o["seed"]: o for o in outcomes if o is not None}


def _differences(a: dict[int, dict], b: dict[int, dict]) -> tuple[np.ndarray, str]:
    """The ``(S, I)`` matrix ``d_si`` over the seeds both have, on the finest shared basis."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return np.empty((0, 0)), "no shared seeds"
    for basis in ("scoring images", "test images"):
        if all(a[s].get("basis") == basis and b[s].get("basis") == basis
               and a[s]["per_image"].shape == b[s]["per_image"].shape for s in seeds):
            return np.stack([a[s]["per_image"] - b[s]["per_image"] for s in seeds]), basis
    return np.array([[a[s]["final_test_nll"] - b[s]["final_test_nll"]] for s in seeds]), "seeds"


def crossed_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean of an ``(S, I)`` matrix of differences with seeds crossed with images.

    Model ``d_si = mu + u_s + v_i + e_si`` (random seed and image effects).
    From the two-way mean squares ``MS_seed = I var(row means)``, ``MS_image
    = S var(column means)`` and the residual ``MS_res``,

        Var(mean) = sigma_u^2/S + sigma_v^2/I + sigma_e^2/(SI),
        sigma_u^2 = max(MS_seed - MS_res, 0)/I,  sigma_v^2 = max(MS_image - MS_res, 0)/S,  sigma_e^2 = MS_res

    with Satterthwaite's degrees of freedom (each term with ``S-1``, ``I-1``,
    ``(S-1)(I-1)``) and a Student-t quantile.  One
    image column (``I = 1``): the one-sample t interval over seeds; one seed:
    images only (the optimizer's randomness is then not assessed).
    Returns ``(mean, low, high, two-sided p for mean = 0)``.
    """
    n_s, n_i = d.shape
    mean = float(d.mean())
    if n_s * n_i < 2:
        return mean, np.nan, np.nan, np.nan
    row, col = d.mean(axis=1), d.mean(axis=0)
    if n_i == 1 or n_s == 1:
        v = d.ravel()
        var, dof = v.var(ddof=1) / v.size, v.size - 1
    else:
        ms_seed = n_i * row.var(ddof=1)
        ms_image = n_s * col.var(ddof=1)
        resid = d - row[:, None] - col[None, :] + mean
        ms_res = np.sum(resid**2) / ((n_s - 1) * (n_i - 1))
        # variance components truncated at 0, each term with its own degrees of freedom
        terms = np.array([max(ms_seed - ms_res, 0.0) / n_i / n_s, max(ms_image - ms_res, 0.0) / n_s / n_i,
                          ms_res / (n_s * n_i)])
        dofs = np.array([n_s - 1, n_i - 1, (n_s - 1) * (n_i - 1)], dtype=float)
        var = float(terms.sum())
        dof = var**2 / np.sum(terms**2 / dofs) if var > 0 else float(dofs[-1])
    se = np.sqrt(var)
    half = float(student_t.ppf(0.5 + level / 2, dof) * se)
    p = float(2 * student_t.sf(abs(mean) / se, dof)) if se > 0 else (0.0 if mean != 0 else 1.0)
    return mean, mean - half, mean + half, p


def paired_comparison(a: dict[int, dict], b: dict[int, dict]) -> dict:
    """``Delta = NLL_A - NLL_B`` (negative: A better) on shared seeds and images: 95% interval and
    p-value of :func:`crossed_interval`, and the Wilcoxon signed-rank p-value of the per-image
    differences averaged over seeds (evidence over images given these seeds; NaN below 6 values)."""
    d, basis = _differences(a, b)
    out = {"basis": basis, "n_seeds": int(d.shape[0]), "n_images": int(d.shape[1]) if d.size else 0,
           "delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "p_wilcoxon": np.nan}
    if d.size == 0:
        return out
    if not np.isfinite(d).all():        # a diverged run on a shared seed: infinitely worse, no test needed
        delta = float(np.mean(d)) if np.isfinite(np.mean(d)) else float(np.sign(np.nansum(np.sign(d))) * np.inf)
        out.update(delta=delta, ci_low=delta, ci_high=delta, p_value=0.0)
        return out
    out["delta"], out["ci_low"], out["ci_high"], out["p_value"] = crossed_interval(d)
    paired = d.mean(axis=0) if d.shape[1] > 1 else d[:, 0]
    if paired.size >= 6 and np.any(paired != 0):
        out["p_wilcoxon"] = float(wilcoxon(paired).pvalue)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for rank_, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank_) * p[i]))
        out[i] = running
    return out


def significant(comparison: dict, adjusted_p: float, alpha: float = ALPHA) -> bool:
    """Holm-adjusted p below ``alpha`` (and, as a guard, an interval that excludes 0)."""
    return bool(np.isfinite(adjusted_p) and adjusted_p < alpha
                and (comparison["ci_high"] < 0 or comparison["ci_low"] > 0))


def adjacent_comparisons(results_dir: str | Path, entries: list[dict]) -> list[dict]:
    """For entries in rank order, each one against the next: the paired comparison, Holm-adjusted
    over the adjacent pairs, and whether the rank difference is significant."""
    outcomes = [entry_outcomes(results_dir, e) for e in entries]
    comps = [paired_comparison(outcomes[i], outcomes[i + 1]) for i in range(len(entries) - 1)]
    adjusted = holm([c["p_value"] for c in comps])
    for c, p in zip(comps, adjusted):
        c["p_holm"] = float(p)
        c["significant"] = significant(c, p)
    return comps


def pairwise_table(results_dir: str | Path, entries: list[dict], names: list[str]) -> pd.DataFrame:
    """Every pair (row better-ranked than column): ``Delta`` and a ``*`` when significant (Holm over all pairs)."""
    outcomes = [entry_outcomes(results_dir, e) for e in entries]
    pairs = [(i, j, paired_comparison(outcomes[i], outcomes[j]))
             for i in range(len(entries)) for j in range(i + 1, len(entries))]
    adjusted = holm([c["p_value"] for _, _, c in pairs])
    table = pd.DataFrame("", index=names, columns=names)
    for (i, j, c), p in zip(pairs, adjusted):
        table.iloc[i, j] = f"{c['delta']:+.3f}{'*' if significant(c, p) else ''}"
    return table


def summarize(results_dir: str | Path, entry: dict) -> dict:
    """Mean over seeds of the scoring-split NLL, suboptimality and test-NLL gap (NaN where absent)."""
    outs = list(entry_outcomes(results_dir, entry).values())

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values and len(values) == len(outs) else np.nan

    return {"score_nll": mean([o["score_nll"] for o in outs]),
            "suboptimality": mean([o["optimality"].get("suboptimality") for o in outs]),
            "test_nll_gap": mean([o["optimality"].get("test_nll_gap") for o in outs]),
            "beat_reference": any(o["optimality"].get("beat_reference") for o in outs)}


def format_comparison(c: dict) -> str:
    """``-0.123 [-0.2, -0.05] p=0.001 *`` (``*``: significant), for tables."""
    if not np.isfinite(c["delta"]) and np.isnan(c["delta"]):
        return f"n/a ({c['basis']})"
    p = "p n/a" if not np.isfinite(c.get("p_holm", np.nan)) else f"p={c['p_holm']:.2g}"
    star = " *" if c.get("significant") else ""
    return f"{c['delta']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] {p}{star}"
