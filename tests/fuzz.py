"""The fuzz budget shared by every property-based test (Hypothesis) of a reader of outside input.

CI runs a fixed, small number of examples per reader so its time stays bounded; set
CXREDGE_FUZZ_EXAMPLES (e.g. 2000) for a deeper run by hand. Examples are derandomised in CI so a
red run is reproducible.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("CXREDGE_FUZZ_EXAMPLES", "60"))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true",
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
