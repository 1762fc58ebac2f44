"""The conditioning experiment: exact spectra tables and the SGD race (Toader et al.).

The maths (band-limited basis, Hessian operators, exact diagonal, Hutchinson,
Lanczos) lives in :mod:`problems.model.spectra`; this module runs the
experiment and formats its tables.
"""
from __future__ import annotations


import numpy as np
from tqdm.auto import tqdm

from problems.model.spectra import (BandBasis, KnownPoseHessian, extreme_eigenvalues, hutchinson_diagonal,
                                    least_squares_solution, probe_diagonal, relative_error, safe_diagonal,
                                    scaled_operator, volume_operator)


def sgd_evals_to_tolerance(oracle, basis: BandBasis, a_star: np.ndarray, step: float,
                           scaling: np.ndarray | None, tol: float, batch_size: int,
                           max_evals: float, progress: bool = False, label: str = "SGD") -> float:
    """Oracle evaluations minibatch SGD on ``a -> f(U a)`` needs to reach ``||a - a*|| <= tol ||a*||``.

    ``a_{t+1} = a_t - step / (1 + t / tau) * P U^T grad f_{B_t}(U a_t)`` from
    ``a = 0`` with ``P = I`` (``scaling=None``) or ``P = diag(scaling)``
    (preconditioned SGD), ``tau`` = steps per epoch, batches from
    ``oracle.next_batch``.  Why the decay: with a constant step both methods
    stall at a gradient-noise floor (the least-squares residuals are noise),
    and preconditioned SGD's floor is far higher because it takes large
    steps along the noisy high-frequency coordinates; the ``1/t`` decay
    removes the floor so the count measures conditioning.  Returns ``inf``
    if ``max_evals`` is spent first (the error is checked after every step).
    """
    a = np.zeros(basis.size)
    target = tol * np.linalg.norm(a_star)
    start = oracle.evals
    tau = max(1.0, oracle.n_train / batch_size)
    t = 0
    bar = tqdm(total=int(max_evals), desc=label, unit="eval", disable=not progress, leave=False)
    with bar:
        while oracle.evals - start + batch_size <= max_evals:
            before = oracle.evals
            _, g = oracle.value_and_grad(basis.to_volume(a, dtype=oracle.dtype), oracle.next_batch(batch_size))
            ga = basis.from_volume(g)
            t += 1
            a = a - step / (1.0 + t / tau) * (ga if scaling is None else scaling * ga)
            bar.update(int(oracle.evals - before))
            err = np.linalg.norm(a - a_star)
            if not np.isfinite(err):
                return np.inf
            if err <= target:
                return float(oracle.evals - start)
    return np.inf


# --------------------------------------------------------------------------- tables
def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if np.isinf(value):
        return "not reached" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """``columns``: (key, header) pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


KNOWN_POSE_COLUMNS = [
    ("fraction_of_nyquist", "band (x Nyquist)"), ("r_max", "r_max (index)"),
    ("resolution_angstrom", "resolution (A)"), ("coefficients", "coefficients"),
    ("lambda_max", "lambda_max"), ("lambda_min", "lambda_min"), ("kappa", "kappa"),
    ("kappa_exact_diag", "kappa, exact diag precond"), ("kappa_hutchinson", "kappa, Hutchinson precond"),
    ("sgd_evals", "SGD evals to tol"), ("psgd_exact_evals", "PSGD (exact D) evals"),
    ("psgd_hutchinson_evals", "PSGD (Hutchinson D) evals"),
]
ABINITIO_COLUMNS = [
    ("fraction_of_nyquist", "subspace band (x Nyquist)"), ("r_max", "r (index)"),
    ("resolution_angstrom", "resolution (A)"), ("coefficients", "coefficients"),
    ("lambda_max", "lambda_max"), ("lambda_min", "lambda_min"), ("kappa", "kappa"),
    ("kappa_exact_diag", "kappa, exact diag precond"), ("kappa_hutchinson", "kappa, Hutchinson precond"),
]
HUTCHINSON_COLUMNS = [("probes", "probes k"), ("cost", "oracle evals charged"),
                      ("relative_error", "||D_k - D|| / ||D||")]


def known_pose_table(scale: str = "small", seed: int = 0, fractions=(0.25, 0.5, 0.75, 0.875),
                     probes: int = 64, probe_batch: int = 100, tol: float = 0.2, sgd_batch: int = 500,
                     max_epochs: float = 50, eig_tol: float = 1e-6,
                     progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Rows of the known-pose conditioning table, and Hutchinson's error vs probes at the top band.

    Per band: exact spectra of ``H_r`` plain and symmetrically preconditioned
    by the exact diagonal and by Hutchinson's estimate (``probes`` probes on
    minibatches of ``probe_batch``, charged); then minibatch SGD from 0 on
    ``a -> f(U a)`` with initial step ``1 / lambda_max`` of the operator it
    sees, decaying as ``1 / (1 + epoch)`` (:func:`sgd_evals_to_tolerance`), (plain, ``D^-1/2 H D^-1/2`` with ``D`` exact, or Hutchinson's),
    counting evaluations until ``||a - a*|| <= tol ||a*||`` (``a*`` the
    exact least-squares solution by CG), at most ``max_epochs`` epochs.
    """
    from problems.catalog.refine import load_refine
    rows, hutch_rows = [], []
    fractions = sorted(fractions)
    checkpoints = sorted({min(probes, 2**j) for j in range(int(np.log2(max(probes, 1))) + 1)} | {probes})
    for frac in tqdm(fractions, desc="bands", disable=not progress):
        problem = load_refine(scale, seed, r_max_fraction=frac)
        hess = KnownPoseHessian(problem)
        op = hess.operator()
        plain = extreme_eigenvalues(op, tol=eig_tol)
        diag = hess.exact_diagonal()
        exact = extreme_eigenvalues(scaled_operator(op, diag), tol=eig_tol)
        oracle = problem.oracle()
        hutch = hutchinson_diagonal(oracle, hess.basis, probes, probe_batch, np.random.default_rng([seed, 7]),
                                    checkpoints=checkpoints, progress=progress)
        d_hutch = safe_diagonal(hutch.estimates[-1])
        approx = extreme_eigenvalues(scaled_operator(op, d_hutch), tol=eig_tol)
        a_star = least_squares_solution(op, -hess.gradient_at_zero(), diag)
        max_evals = max_epochs * problem.n_train
        runs = {}
        for key, spec, scaling in (("sgd_evals", plain, None), ("psgd_exact_evals", exact, 1.0 / diag),
                                   ("psgd_hutchinson_evals", approx, 1.0 / d_hutch)):
            runs[key] = sgd_evals_to_tolerance(problem.oracle(), hess.basis, a_star, 1.0 / spec.lambda_max,
                                               scaling, tol, sgd_batch, max_evals, progress=progress,
                                               label=f"{key} r={problem.band.r_max:g}")
        rows.append({
            "fraction_of_nyquist": frac, "r_max": problem.band.r_max,
            "resolution_angstrom": problem.metadata["resolution_angstrom"], "coefficients": hess.basis.size,
            "lambda_max": plain.lambda_max, "lambda_min": plain.lambda_min, "kappa": plain.kappa,
            "kappa_exact_diag": exact.kappa, "kappa_hutchinson": approx.kappa,
            "hutchinson_probes": probes, "hutchinson_cost": hutch.cost,
            "hutchinson_relative_error": relative_error(hutch.estimates[-1], diag), **runs,
            "sgd_tolerance": tol, "sgd_batch": sgd_batch, "max_evals": max_evals, "n_train": problem.n_train,
            "matvecs": plain.matvecs + exact.matvecs + approx.matvecs,
        })
        if frac == fractions[-1]:
            per_probe = hutch.cost / probes
            hutch_rows = [{"probes": int(k), "cost": per_probe * k, "relative_error": relative_error(e, diag)}
                          for k, e in zip(hutch.probes, hutch.estimates)]
    return rows, hutch_rows


def abinitio_table(scale: str = "small", seed: int = 0, fractions_of_band=(0.5, 1.0), n_images: int = 100,
                   probes: int = 32, exact_limit: int = 800, eig_tol: float = 1e-5,
                   progress: bool = True) -> list[dict]:
    """Spectra of the ab-initio (marginal) objective's Hessian at the ground truth.

    The Hessian is not constant here; it is evaluated at ``x = ground truth``
    through the oracle's ``hvp`` (float64) on the first ``n_images``
    training images (a fixed batch, so the operator is one symmetric matrix),
    restricted to band-limited volumes of radius ``fraction * r_max`` of the
    problem's band.  The exact diagonal is probed with unit vectors when the
    subspace has at most ``exact_limit`` coordinates; Hutchinson uses
    ``probes`` Rademacher probes on the same batch.  No SGD column: the
    objective is not quadratic.
    """
    from problems import load_problem
    problem = load_problem("synthetic", scale=scale, seed=seed, progress=progress)
    oracle = problem.oracle(dtype=np.float64)
    idx = np.arange(min(n_images, problem.n_train))
    x_ref = problem.ground_truth.astype(np.float64)
    pixel = problem.metadata["pixel_size_angstrom"]
    rows = []
    for frac in tqdm(sorted(fractions_of_band), desc="ab-initio bands", disable=not progress):
        radius = frac * problem.band.r_max
        basis = BandBasis(problem.box_size, radius)
        op = volume_operator(lambda v: oracle.hvp(x_ref, v, idx), basis)
        plain = extreme_eigenvalues(op, tol=eig_tol)
        exact = None
        if basis.size <= exact_limit:
            diag = probe_diagonal(op, progress=progress)
            if np.all(diag > 0):
                exact = extreme_eigenvalues(scaled_operator(op, diag), tol=eig_tol)
        rng = np.random.default_rng([seed, 11])
        mean = np.zeros(basis.size)
        for k in tqdm(range(1, probes + 1), desc="Hutchinson probes", disable=not progress, leave=False):
            z = rng.choice(np.array([-1.0, 1.0]), size=basis.size)
            mean += (z * op.matvec(z) - mean) / k
        approx = extreme_eigenvalues(scaled_operator(op, safe_diagonal(mean)), tol=eig_tol)
        rows.append({
            "fraction_of_nyquist": radius / (problem.box_size / 2), "r_max": radius,
            "resolution_angstrom": problem.box_size * pixel / radius, "coefficients": basis.size,
            "lambda_max": plain.lambda_max, "lambda_min": plain.lambda_min,
            "kappa": plain.kappa if plain.lambda_min > 0 else "indefinite",
            "kappa_exact_diag": (exact.kappa if exact.lambda_min > 0 else "indefinite") if exact else
            (f"not computed (> {exact_limit} coefficients)" if basis.size > exact_limit else "diag not positive"),
            "kappa_hutchinson": approx.kappa if approx.lambda_min > 0 else "indefinite",
            "n_images": int(idx.size), "hutchinson_probes": probes, "evaluated_at": "ground truth",
        })
    return rows
