"""Toader et al.'s conditioning study and runs on the paper-scale problem: the free Fourier volume.

At paper scale ``refine-known-poses`` is their own model
(:class:`problems.model.likelihoods.FourierVolumePart`): the unknown is the
complex Fourier volume ``v``, the oracle's vector its flat float32 view.
Everything here works on that variable directly (no band basis: at 128 px
it would be dense and huge).

**Condition numbers** (:func:`fourier_kappa`).  Their definition: nearest-neighbour
slices, ``H = lambda I + (1/K) sum_i S_i^T diag(C_i^2) S_i`` (``sigma = 1``,
``lambda = 1e-8``) is diagonal, exact by counting
(:meth:`~problems.model.fourier_volume.FourierVolumeLikelihood.hess_diag` over
all training images), and ``kappa(r) = max H / min H`` over the ball
``|xi| <= r`` for every integer ``r`` up to the band, with and without CTF.
With the trilinear slices of the runs, ``H`` is the exact 27-point stencil
(:func:`problems.model.fourier_hessian.assemble_hessian`); on a few balls its
extreme Ritz values come from LOBPCG (Jacobi preconditioner).  A Ritz value
lies inside the spectrum, so ``theta_max / theta_min <= kappa``: the quoted
trilinear number is a lower bound, with each end's residual
``|H u - theta u|`` saying how converged it is.

**Reference** (:func:`fourier_reference`).  The training objective is the
quadratic ``F(v) = 1/2 v^H H v - Re(b^H v) + const`` with
``b = -grad F(0)`` (one pass over the images) and ``H`` the assembled stencil
plus the prior's ``lambda / K``.  Diagonally preconditioned CG (complex
vectors, float64) to a relative residual ``rtol``; with ``r = b - H v*``,

.. math:: F(v) - F(v^*) = \\tfrac12 \\mathrm{Re}(e^H H e) - \\mathrm{Re}(r^H e), \\quad e = v - v^*,
          \\qquad 0 \\le F(v^*) - F_{\\min} = \\tfrac12 r^H H^{-1} r \\le \\frac{\\|r\\|^2}{2\\,\\lambda/K},

the last because ``H >= (lambda / K) I`` (the data term is positive
semi-definite): a certified gap.  The assembly is checked against the
oracle's own matrix-free ``hvp`` summed over all training images for one
random vector (relative difference reported).
"""
from __future__ import annotations

import time

import numpy as np

from problems.model.fourier_hessian import assemble_hessian, extreme_eigenvalues
from problems.model.fourier_volume import FourierVolumeLikelihood

from .toader_kappa import LAMBDA, kappa_by_radius, kappa_lower_bound

BATCH = 1000


def _batches(k: int, size: int = BATCH):
    return [slice(s, min(s + size, k)) for s in range(0, k, size)]


def nn_diagonal_fourier(problem, use_ctf: bool, lam: float = LAMBDA) -> np.ndarray:
    """``H(xi) = lambda + (1/K) sum_i sum_k [round(A_i^T [k, 0]) = xi] C_i(k)^2`` on the n^3 grid (sigma = 1)."""
    _, ctf, rot = problem.split_arrays("train")
    lik = FourierVolumeLikelihood(problem.box_size, problem.band.r_max, 1.0, "nn", np.float32)
    k = rot.shape[0]
    out = np.zeros((problem.box_size,) * 3)
    for s in _batches(k):
        terms = lik.prepare(np.zeros((1, 1), np.complex64), ctf[s], rot[s])
        out += lik.hess_diag(terms, ctf=use_ctf) * ((s.stop - s.start) / k)
    return out + lam


def fourier_kappa(problem, lam: float = LAMBDA, tri_radii=(4, 8, 16, 32), tri_iterations: int = 40,
                  progress: bool = False) -> tuple[dict, dict]:
    """(a) on the problem's training poses: nn ``kappa(r)`` for every radius, with and without CTF; trilinear
    lower bounds on a few balls (module docstring).  Returns the record and the nn diagonals."""
    radii = np.arange(1, int(np.floor(problem.band.r_max)) + 1)
    k = problem.n_train
    out = {"radius": radii.tolist(), "n_images": k, "bound": [kappa_lower_bound(r, k, lam) for r in radii]}
    diags = {}
    for name, use in (("no_ctf", False), ("ctf", True)):
        t0 = time.perf_counter()
        diags[name] = nn_diagonal_fourier(problem, use, lam)
        out[name] = kappa_by_radius(diags[name], radii).tolist()
        out[f"{name}_seconds"] = time.perf_counter() - t0
        if progress:
            print(f"  kappa nn {name}: r=1 {out[name][0]:.4g}, r={radii[-1]} {out[name][-1]:.4g} "
                  f"({out[f'{name}_seconds']:.0f} s)")
    if tri_radii:
        t0 = time.perf_counter()
        _, ctf, rot = problem.split_arrays("train")
        lik = FourierVolumeLikelihood(problem.box_size, problem.band.r_max, 1.0, "tri", np.float32)
        hess = assemble_hessian(lik, ctf, rot, use_ctf=True, lam=lam)
        rows = []
        for r in tri_radii:
            op, d = hess.ball_operator(r)
            spec = extreme_eigenvalues(op, d, tol=1e-6, maxiter=tri_iterations)
            rows.append({"radius": r, **spec, "kappa_lower": spec["lambda_max"] / spec["lambda_min"]})
            if progress:
                print(f"  kappa tri (CTF) r={r}: >= {rows[-1]['kappa_lower']:.4g} (residuals "
                      f"{spec['residual_max']:.2g}, {spec['residual_min']:.2g})")
        out["tri_ctf"] = rows
        out["tri_seconds"] = time.perf_counter() - t0
    return out, diags


def fourier_reference(problem, rtol: float = 1e-8, max_iter: int = 3000, check: bool = True,
                      progress: bool = False) -> dict:
    """``v*`` by Jacobi-preconditioned CG on the assembled quadratic (module docstring), with its certificate."""
    images, ctf, rot = problem.split_arrays("train")
    k = rot.shape[0]
    lik = problem.likelihood(np.float32)
    lam_k = problem.prior.lam / k
    t0 = time.perf_counter()
    hess = assemble_hessian(lik, ctf, rot, use_ctf=True, lam=lam_k)
    t_assemble = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = np.zeros(problem.box_size**3, np.complex128)
    zero = np.zeros(lik.shape, np.float32)
    for s in _batches(k):
        _, g = lik.nll_and_grad(zero, lik.prepare(images[s], ctf[s], rot[s]))
        b -= g.view(np.complex64) * ((s.stop - s.start) / k)
    t_b = time.perf_counter() - t0
    check_rel = None
    t0 = time.perf_counter()
    if check:                                  # the stencil against the matrix-free hvp over every image
        rng = np.random.default_rng(1)
        u = rng.standard_normal(lik.shape).astype(np.float32)
        true = np.zeros(problem.box_size**3, np.complex128)
        for s in _batches(k):
            true += lik.hvp(None, u, lik.prepare(images[s][:, :0], ctf[s], rot[s])).view(np.complex64) \
                * ((s.stop - s.start) / k)
        true += lam_k * u.view(np.complex64)
        check_rel = float(np.linalg.norm(hess.matvec(u.view(np.complex64)) - true) / np.linalg.norm(true))
    t_check = time.perf_counter() - t0
    t0 = time.perf_counter()
    diag = hess.diagonal()
    x = np.zeros_like(b)
    r = b.copy()
    z = r / diag
    p = z.copy()
    rz = np.vdot(r, z).real
    bnorm, it = np.linalg.norm(b), 0
    while np.linalg.norm(r) > rtol * bnorm and it < max_iter:
        hp = hess.matvec(p)
        alpha = rz / np.vdot(p, hp).real
        x += alpha * p
        r -= alpha * hp
        z = r / diag
        rz, rz_old = np.vdot(r, z).real, rz
        p = z + (rz / rz_old) * p
        it += 1
    r = b - hess.matvec(x)                     # the true residual, not the recursion's
    t_cg = time.perf_counter() - t0
    rnorm = float(np.linalg.norm(r))
    out = {"v": x, "residual": r, "hess": hess, "diagonal": diag,
           "cg_iterations": it, "relative_residual": rnorm / float(bnorm), "residual_norm": rnorm,
           "gap_bound": rnorm**2 / (2 * lam_k) if lam_k > 0 else float("inf"), "lambda_over_k": lam_k,
           "assembly_check_relative": check_rel,
           "seconds": {"assemble": t_assemble, "b": t_b, "check": t_check, "cg": t_cg}}
    if progress:
        print(f"  reference: PCG {it} iterations, relative residual {out['relative_residual']:.2e}, certified gap "
              f"<= {out['gap_bound']:.2e}; stencil vs hvp {check_rel}; {sum(out['seconds'].values()):.0f} s")
    return out


def suboptimality(ref: dict, x: np.ndarray) -> float:
    """``F(v) - F(v*)`` for the real view ``x`` (module docstring), float64."""
    e = np.asarray(x, np.float32).view(np.complex64).astype(np.complex128) - ref["v"]
    return float(0.5 * np.vdot(e, ref["hess"].matvec(e)).real - np.vdot(ref["residual"], e).real)


def shell_fsc(n: int, r_max: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC per shell ``round(|xi|) = 0..floor(r_max)``: ``Re sum a conj b / sqrt(sum|a|^2 sum|b|^2)``."""
    g = np.arange(n) - n // 2
    s = np.rint(np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)).astype(int).ravel()
    keep = s <= int(np.floor(r_max))
    a, b, s = a.reshape(-1)[keep], b.reshape(-1)[keep], s[keep]
    m = s.max() + 1
    num = np.bincount(s, (a * np.conj(b)).real, m)
    den = np.sqrt(np.bincount(s, np.abs(a) ** 2, m) * np.bincount(s, np.abs(b) ** 2, m))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def run_fourier(problem, ref: dict, opt, epochs: int, seed: int = 0, progress: bool = False,
                name: str = "") -> dict:
    """``epochs`` epochs of ``opt`` on the problem's own oracle from the initial density; per-epoch records
    (suboptimality, FSC against ``v*``; their computation is outside the timed epochs)."""
    from .toader_runs import run_epochs

    def show(r):
        print(f"    {name} epoch {r['epoch']}: F - F* = {r['suboptimality']:.4g} ({r['seconds']:.0f} s)")

    return run_epochs(problem.oracle(), problem.initial_density(seed), opt, epochs,
                      lambda x, epoch, evals, seconds, eta: _row(problem, ref, x, epoch, evals, seconds, eta),
                      seed, show if progress else None)


def _row(problem, ref, x, epoch, evals, seconds, eta) -> dict:
    v = np.asarray(x, np.float32).view(np.complex64)
    return {"epoch": epoch, "suboptimality": suboptimality(ref, x), "evals": float(evals), "seconds": seconds,
            "eta": None if eta is None else float(eta),
            "fsc": shell_fsc(problem.box_size, problem.band.r_max, v, ref["v"]).tolist()}


OURS = ("adagrad", "adam")                       # our diagonally preconditioned optimizers (optimizers/adaptive.py)
OURS_LR_GRID = tuple(float(v) for v in 10.0 ** np.arange(-4, 2))


def tune_ours(problem, ref: dict, name: str, batch: int, steps: int = 10, seed: int = 0) -> dict:
    """Our optimizers have a learning rate where theirs have fixed constants: the best of ``OURS_LR_GRID``
    by ``F - F*`` after ``steps`` steps from the run's start (their cost is not in the runs' records)."""
    from optimizers import OptimizerInfo, get_optimizer
    scores = {}
    for lr in OURS_LR_GRID:
        opt, oracle = get_optimizer(name, lr=lr, batch_size=batch), problem.oracle()
        rng = np.random.default_rng([seed, 0x70AD])
        x = problem.initial_density(seed)
        state = opt.init(x, OptimizerInfo(oracle.n_train, oracle.shape, None), rng)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(steps):
                x, state = opt.step(x, state, oracle, rng)
            gap = suboptimality(ref, x) if np.isfinite(x).all() else np.inf
        scores[lr] = gap if np.isfinite(gap) else np.inf
    best = min(scores, key=scores.get)
    return {"lr": best, "steps": steps, "grid": {f"{k:g}": v for k, v in scores.items()}}


def fourier_runs(problem, epochs: int = 10, progress: bool = True, rtol: float = 1e-8) -> dict:
    """The certified reference, their four runs and our preconditioned optimizers on the Fourier-volume problem
    (``toader_runs``' record shape).

    ``sgd-diag`` uses the exact ``diag(H)`` of the assembled stencil (each
    entry repeated for the real and imaginary part of the flat view).  Ours
    (``OURS``) run at the same batch with the learning rate of
    :func:`tune_ours`; the record's ``tuning`` says which and how it was chosen.
    """
    from .toader_runs import largest_shell_count, methods
    t0 = time.perf_counter()
    ref = fourier_reference(problem, rtol=rtol, progress=progress)
    ref_seconds = time.perf_counter() - t0
    batch = max(1, problem.n_train // 30)
    warm = problem.oracle()                      # compile the kernels outside the timed epochs
    x0 = problem.initial_density(0)
    warm.value_and_grad(x0, np.arange(2)), warm.hvp(x0, x0, np.arange(2)), warm.value(x0, np.arange(2))
    alpha = 1.0 / largest_shell_count(problem.band.r_max)
    diagonal = np.repeat(ref["diagonal"], 2).astype(np.float32)
    keep = ("cg_iterations", "relative_residual", "residual_norm", "gap_bound", "lambda_over_k",
            "assembly_check_relative", "seconds")
    out = {"reference": {k: ref[k] for k in keep}, "reference_seconds": ref_seconds, "batch": batch,
           "alpha": alpha, "runs": {}}
    from optimizers import get_optimizer
    runs = dict(methods(batch, diagonal, alpha))
    out["tuning"] = {}
    for name in OURS:
        out["tuning"][name] = tune_ours(problem, ref, name, batch)
        runs[name] = get_optimizer(name, lr=out["tuning"][name]["lr"], batch_size=batch)
        if progress:
            print(f"  {name}: lr {out['tuning'][name]['lr']:g} (best of {len(OURS_LR_GRID)} after 10 steps)")
    for name, opt in runs.items():
        out["runs"][name] = run_fourier(problem, ref, opt, epochs, progress=progress, name=name)
        out["runs"][name].pop("final")
        if progress:
            print(f"  {name}: F - F* = {out['runs'][name]['rows'][-1]['suboptimality']:.4g} after {epochs} epochs "
                  f"({out['runs'][name]['seconds_per_epoch']:.1f} s/epoch)")
    out["exact_diagonal"] = ref["diagonal"]
    return out


def nn_diagonal_first(problem, count: int = 5, lam: float = LAMBDA) -> np.ndarray:
    """nn ``diag(H)`` with CTF of the first ``count`` training images (their figure of a few images)."""
    _, ctf, rot = problem.split_arrays("train")
    lik = FourierVolumeLikelihood(problem.box_size, problem.band.r_max, 1.0, "nn", np.float32)
    return lik.hess_diag(lik.prepare(np.zeros((1, 1), np.complex64), ctf[:count], rot[:count])) + lam


def markdown_parts(rec: dict) -> dict:
    """The report's paper-scale sentences (speed, reference, trilinear kappa, setting) from the record."""
    s, ref, ka = rec["speed"], rec["reference"], rec["kappa_problem_poses"]
    sec = ref["seconds"]
    speed = (f"{s['seconds_per_step']:.2f} s per SGD step of {s['batch']} images (prepare + value_and_grad + update; "
             f"float32, free Fourier volume, trilinear, random data at {s['box']} px, r = {s['r_max']:g}, "
             f"{s['samples_per_image']} samples per image): a projected epoch of **{s['epoch_seconds']:.0f} s** "
             f"(target 30 s); with one Armijo trial {s['epoch_seconds_sgd_armijo_one_trial']:.0f} s, Algorithm 1 "
             f"(one hvp, one trial) {s['epoch_seconds_alg1_one_trial']:.0f} s. Same run: one read of the batch's "
             f"images and CTFs {s['read_batch_seconds']:.3f} s (a step is {s['step_over_read']:.0f}x that read: the "
             f"trilinear scatter's scattered accesses, not bandwidth, bound it); numpy sgemm "
             f"{s['numpy_sgemm_gflops']:.0f} GFLOP/s; peak memory {s['peak_rss_gib']:.1f} GiB")
    if "old_path_step_seconds" in s:
        speed += (f"; the small-scale path (real volume, 2x oversampled cube) at the same box "
                  f"{s['old_path_step_seconds']:.2f} s per value_and_grad ({s['old_over_new']:.1f}x)")
    tri = ka.get("tri_ctf", [])
    trilinear = ("Trilinear slices (the runs' H), with CTF, exact 27-point stencil; LOBPCG Ritz values on the ball "
                 "give kappa >= theta_max / theta_min (Ritz values lie inside the spectrum): "
                 + "; ".join(f"r = {t['radius']}: kappa >= {t['kappa_lower']:.4g} (residuals {t['residual_max']:.1e}, "
                             f"{t['residual_min']:.1e}; {t['products']} products)" for t in tri) + ".")
    reference = (f"Reference: Jacobi-preconditioned CG on the assembled 27-point Hessian (against the matrix-free hvp "
                 f"summed over all training images: relative difference {ref['assembly_check_relative']:.1e}), "
                 f"{ref['cg_iterations']} iterations, relative residual {ref['relative_residual']:.2e}; certified gap "
                 f"F(v*) - F_min <= |r|^2 / (2 lambda/K) = {ref['gap_bound']:.2e}.")
    if rec.get("tuning"):
        reference += (" Ours (optimizers/adaptive.py) have a learning rate where theirs have fixed constants: "
                      + ", ".join(f"{name} lr {t['lr']:g}" for name, t in rec["tuning"].items())
                      + f", each the lowest F - F* after {next(iter(rec['tuning'].values()))['steps']} steps over lr "
                      f"{OURS_LR_GRID[0]:g}..{OURS_LR_GRID[-1]:g} (decades); that search is not in the table's cost.")
    phases = (f"Reference: assembly {sec['assemble']:.0f} s, b {sec['b']:.0f} s, check {sec['check']:.0f} s, "
              f"PCG {sec['cg']:.0f} s.")
    setting = ("Differences of setting, and why: the model and loss are theirs (free complex Fourier volume on the "
               "n^3 grid, trilinear slices on the full disc, f = mean NLL + 1e-8/2 |v|^2, sigma = 1); the data are "
               "exact slices of 6ZU5's atoms at 128 px / 2.8 Å with known poses and CTFs (theirs: EMPIAR-10076 "
               "cropped to 192 px / 2.18 Å, r up to 95), so the band stops at r = 63 and the optimum keeps the "
               "model-mismatch residual of real data; the precomputed diagonal is exact (assembled), theirs "
               "Hutchinson over 1000 epochs; the reference is certified PCG, theirs L-BFGS.")
    return {"speed": speed, "trilinear": trilinear, "reference": reference, "phases": phases, "setting": setting}
