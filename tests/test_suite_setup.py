"""The suite's own set-up (conftest.py): the Hypothesis profile follows the environment."""

from __future__ import annotations

import os

from _shared import CI_EXAMPLES, examples
from hypothesis import settings


def test_the_hypothesis_profile_follows_the_environment() -> None:
    """HYPOTHESIS_PROFILE names the profile; else CI selects ``ci``, else ``dev``."""
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    chosen = settings.get_profile(name)
    assert settings.default.max_examples == chosen.max_examples
    assert settings.default.derandomize == chosen.derandomize
    assert settings.get_profile("ci").max_examples == CI_EXAMPLES
    assert settings.get_profile("ci").derandomize
    assert settings.get_profile("dev").max_examples < CI_EXAMPLES


def test_examples_scale_a_tests_count_with_the_profile() -> None:
    """``examples(n)``: n under ``ci``, proportionally fewer under ``dev``, never below 10."""
    scale = settings.default.max_examples / CI_EXAMPLES
    assert examples(1500) == max(10, int(1500 * scale))
    assert examples(1) == 10
