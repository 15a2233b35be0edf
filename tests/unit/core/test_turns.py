"""Turns for other connections: nothing until the server runtime installs its switch, then that switch."""

import pytest

from producer_api.core import turns


@pytest.fixture
def no_switch(monkeypatch):
    monkeypatch.setattr(turns, "_switch", None)  # restored after the test


def test_a_turn_is_nothing_until_a_switch_is_installed(no_switch):
    turns.give_turn()


def test_a_turn_calls_the_installed_switch(no_switch):
    given = []
    turns.install(lambda: given.append("switched"))
    turns.give_turn()
    turns.give_turn()
    assert given == ["switched", "switched"]
