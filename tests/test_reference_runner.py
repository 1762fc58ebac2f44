"""Run records carry the harness's end-of-run scores: suboptimality, test-NLL gap, per-image NLLs."""
import json

import numpy as np
import pytest

from bench.reference import compute_reference

