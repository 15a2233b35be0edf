"""Fixtures shared by unit and integration tests."""

import dataclasses

import pytest

from producer_api.config import Settings


@pytest.fixture
def make_settings():
    """Build Settings like the environment would, with some fields overridden."""

    def make(**overrides) -> Settings:
        settings = dataclasses.replace(Settings(), **overrides)
        settings.check()
        return settings

    return make
