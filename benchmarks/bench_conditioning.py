"""Quality: condition number of the small known-pose problem (Toader et al.), plain and preconditioned."""


class Conditioning:
    params = [0.25, 0.5]
    param_names = ["band_fraction_of_nyquist"]
    timeout = 300
    unit = "condition number"

    def setup_cache(self):
        from problems.model.spectra import KnownPoseHessian, extreme_eigenvalues, scaled_operator
        from problems import load_problem

        from .common import use_cache
        use_cache()
        out = {}
        for frac in self.params:
            hess = KnownPoseHessian(load_problem("refine-known-poses", scale="small", seed=0, r_max_fraction=frac))
            op = hess.operator()
            out[frac] = (extreme_eigenvalues(op, tol=1e-5).kappa,
                         extreme_eigenvalues(scaled_operator(op, hess.exact_diagonal()), tol=1e-5).kappa)
        return out

    def track_kappa(self, cache, frac):
        return cache[frac][0]

    def track_kappa_exact_diagonal_preconditioner(self, cache, frac):
        return cache[frac][1]
