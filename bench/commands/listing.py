"""List installed problems and optimizers."""
from __future__ import annotations


class Problems:
    """List the registered problems and their scales."""

    @staticmethod
    def add_args(p) -> None:
        pass

    @staticmethod
    def main(args) -> int:
        from problems import list_problems
        for name, info in list_problems().items():
            print(f"{name:<22} scales: {', '.join(info['scales']):<20} {info['description']}")
        return 0


class Optimizers:
    """List the installed optimizers (built-ins and entry-point plug-ins)."""

    @staticmethod
    def add_args(p) -> None:
        pass

    @staticmethod
    def main(args) -> int:
        from optimizers import available, get_optimizer_class
        for name, origin in sorted(available().items()):
            cls = get_optimizer_class(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"{name:<22} {origin:<12} {doc}")
        return 0
