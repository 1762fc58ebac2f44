"""Reach the maintainer's terminal: an error message with ANSI escapes and a carriage return (issue 22, guarantee 4)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name = "attack-text"
    search_space = {}

    def __post_init__(self):
        raise ValueError("\x1b[2J\x1b]0;owned\x07\rcryoopt submit: entry written (ranked #1)")

    def init(self, x0, info, rng):
        return 0

    def step(self, x, state, oracle, rng):
        return x, state
