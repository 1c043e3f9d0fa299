"""Fuzzing: malformed field data, tokens, parameters and model files at every public entry point.

Property (see ``tests/_strategies.py``): every generated example knows what is
wrong with it (a dim dropped, NaN in a given field, sample and time step, an
invalid parameter, a damaged file member ...). A call on an example without a
flaw it checks must succeed with finite output (from finite input); a call on
one with such a flaw must raise the flaw's error type, one of
:data:`skmld.exceptions.DOCUMENTED_ERRORS`, with a message that names the
problem (the field, dim, parameter, index or member). The wrong error, an
error about something else, an undocumented exception type, a flawed input
accepted and NaN from finite input all fail. ``fit`` is fuzzed up to the point
where it would build its networks, so no network is trained here; the
predict-side targets use the session's tiny fitted pipelines.

Examples per target: ``SKMLD_FUZZ_EXAMPLES`` (default 25; half for the slow
targets that run a model or load a model file), derandomized so CI is
reproducible; ``benchmarks/fuzz.py`` runs the same targets with many more.
"""

import os
import sys
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from _strategies import SLOW_TARGETS, TARGETS, Context, model_files

EXAMPLES = int(os.environ.get("SKMLD_FUZZ_EXAMPLES", "25"))
# Targets that run a model or load a model file for each example get half as many.
SLOW_EXAMPLES = max(1, EXAMPLES // 2)


@pytest.fixture(scope="module")
def ctx(micro_pipe, meso_pipe, micro_X, meso_X):
    return Context(micro_pipe, meso_pipe, micro_X, meso_X, model_files(micro_pipe))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_public_call_succeeds_or_names_what_is_wrong(ctx, name):
    target = TARGETS[name]

    @settings(max_examples=SLOW_EXAMPLES if name in SLOW_TARGETS else EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings are allowed; only errors are checked
            target(data.draw, ctx)

    run()
