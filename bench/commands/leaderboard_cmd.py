"""Rank leaderboard entries (test NLL with bootstrap 95% CIs) in the terminal and as Markdown."""
from __future__ import annotations

from pathlib import Path


def add_args(p) -> None:
    p.add_argument("--results", default="results")
    p.add_argument("--problem", help="problem label, e.g. synthetic-tiny (default: every label present)")
    p.add_argument("--build", metavar="SCALE", help="first run the protocol for missing built-in entries "
                   "of the synthetic problem at this scale")
    p.add_argument("--out", default="reports/leaderboard", help="where leaderboard.md is written")


def main(args) -> int:
    from ..leaderboard import rank, to_markdown
    from ..submit import SecretSeedMissing, ensure_builtin_entries
    if args.build:
        ensure_builtin_entries("synthetic", args.build, args.results)
    root = Path(args.results) / "leaderboard"
    labels = [args.problem] if args.problem else sorted(p.name for p in root.glob("*") if p.is_dir())
    if not labels:
        print(f"no leaderboard entries under {root}; run `cryoopt submit ...` or `cryoopt leaderboard --build tiny`")
        return 1
    for label in labels:
        if not any(p.stem in {"sgd"} for p in (root / label).glob("*.json")):
            scale = label.rsplit("-", 1)[-1]
            if label.startswith("synthetic-") and scale in ("tiny", "small", "paper"):
                try:
                    ensure_builtin_entries("synthetic", scale, args.results)
                except SecretSeedMissing as exc:       # rank what is there; say why built-ins are missing
                    print(f"built-in entries not computed: {exc}")
    text = "\n".join(to_markdown(rank(args.results, label), label) + _unranked(args.results, label)
                     for label in labels)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.md").write_text(text)
    print(f"written: {out / 'leaderboard.md'}")
    return 0


def _unranked(results: str, label: str) -> str:
    """Entries not ranked (a run that timed out or failed, or an unreadable file), with the reason."""
    from ..leaderboard import load_entries
    entries, problems = load_entries(Path(results), label)
    lines = [f"- `{e['entry_id']}` ({e['optimizer']}): {e['entry_status']}"
             for e in entries if e["entry_status"] != "ranked"] + [f"- {p}" for p in problems]
    return ("\nNot ranked:\n\n" + "\n".join(lines) + "\n") if lines else ""
