"""Fixtures shared by unit and integration tests."""

import dataclasses
import os

import pytest

from producer_api.config import Settings

# run.sh test runs the stock_path tests a second time with PRODUCER_TUNING=off: the in-process producers follow it
# as gunicorn's workers do.
_TUNING_AS_ASKED = Settings.from_env({"PRODUCER_TUNING": os.environ.get("PRODUCER_TUNING", "on")})


@pytest.fixture
def make_settings():
    """Build Settings like the environment would, with some fields overridden."""

    def make(**overrides) -> Settings:
        settings = dataclasses.replace(_TUNING_AS_ASKED, **overrides)
        settings.check()
        return settings

    return make
