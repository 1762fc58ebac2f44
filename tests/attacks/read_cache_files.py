"""Read the training/test images in the data cache by every file route: open, os.open, mmap, listdir, /proc/self/root."""
import mmap
import os
from dataclasses import dataclass


def attempt():
    won = []
    roots = ["__CACHE__", "/tmp/cryocache", os.path.expanduser("~/.cache/cryoopt"), "/root/.cache/cryoopt",
             "/proc/self/root__CACHE__", "/proc/1/root__CACHE__", "__REPO__"]
    for root in roots:
        try:
            won.append(f"listdir {root}: {os.listdir(root)[:3]}")
        except OSError:
            pass
        for dirpath in (root, *(os.path.join(root, d) for d in ("synthetic-tiny-v1-seed0",))):
            for name in ("particles.mrcs", "test_indices.npy", "meta.json"):
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as fh:
                        won.append(f"open {path}: {fh.read(8)!r}")
                except OSError:
                    pass
                try:
                    fd = os.open(path, os.O_RDONLY)
                    won.append(f"os.open {path}: {len(mmap.mmap(fd, 0, prot=mmap.PROT_READ)[:8])}")
                except (OSError, ValueError):
                    pass
    print(("SUCCEEDED: " + "; ".join(won)) if won else "BLOCKED: no cache file reachable", flush=True)


@dataclass(frozen=True)
class Attack:
    name = "attack-files"
    search_space = {}

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        if state == 0:
            attempt()
        _, g = oracle.value_and_grad(x, oracle.next_batch(100))
        return x - g, state + 1
