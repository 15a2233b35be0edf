"""The register of changes to libraries' internals, its version guard and its switches."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path

import pytest

from producer_api import tuning
from producer_api.config import ConfigError, Settings

REPO = Path(__file__).resolve().parents[2]
TUNING_MODULES = sorted(path for path in (REPO / "producer_api").rglob("tuning/*.py") if path.name != "__init__.py")


def test_every_tuning_module_is_registered_and_every_entry_has_its_module():
    modules = {".".join(path.relative_to(REPO).with_suffix("").parts) for path in TUNING_MODULES}
    assert modules == {entry.module for entry in tuning.REGISTER}
    assert {entry.module.rsplit(".", 1)[1] for entry in tuning.REGISTER} == tuning.NAMES


@pytest.mark.parametrize("entry", tuning.REGISTER, ids=lambda entry: entry.name)
def test_each_module_says_what_it_replaces_and_the_version_it_was_verified_on(entry):
    doc = importlib.import_module(entry.module).__doc__
    assert "Replaces" in doc
    assert entry.verified in doc


@pytest.mark.parametrize("entry", tuning.REGISTER, ids=lambda entry: entry.name)
def test_each_change_is_in_the_register_doc_and_verified_on_the_pinned_version(entry):
    register = (REPO / "docs" / "tuning.md").read_text()
    assert f"`{entry.name}`" in register
    assert entry.kind in (tuning.SPEED, tuning.FIX)
    assert entry.matches_installed(), f"{entry.library} {entry.installed()} is not {entry.verified}: re-verify"


def test_enabled_follows_the_switch_the_skip_list_and_the_version(monkeypatch):
    on = Settings()
    assert tuning.enabled("batch_append", on)
    assert not tuning.enabled("batch_append", dataclasses.replace(on, tuning=False))
    assert not tuning.enabled("batch_append", dataclasses.replace(on, tuning_skip=("batch_append",)))
    assert tuning.enabled("send_before_wait", dataclasses.replace(on, tuning_skip=("batch_append",)))
    monkeypatch.setattr(tuning, "_installed_version", lambda library: "99.0")
    assert not tuning.enabled("batch_append", on)


def test_a_version_mismatch_is_one_warning_line_per_change(monkeypatch, caplog):
    monkeypatch.setattr(tuning, "_installed_version",
                        lambda library: "99.0" if library == "gevent" else tuning.REGISTER[0].verified
                        if library == "kafka-python" else "27.0.1")
    log = logging.getLogger("test.tuning")
    with caplog.at_level(logging.WARNING, logger="test.tuning"):
        mismatched = tuning.warn_about_versions(log, Settings())
    gevent_changes = [entry.name for entry in tuning.REGISTER if entry.library == "gevent"]
    assert [entry.name for entry in mismatched] == gevent_changes
    assert len(caplog.records) == len(gevent_changes)
    assert "verified on gevent" in caplog.text and "installed 99.0" in caplog.text
    caplog.clear()
    assert tuning.warn_about_versions(log, dataclasses.replace(Settings(), tuning=False)) == []
    assert caplog.records == []


def test_the_environment_switches_tuning_off_or_skips_named_changes():
    assert Settings.from_env({"PRODUCER_TUNING": "off"}).tuning is False
    assert Settings.from_env({}).tuning is True
    skipped = Settings.from_env({"PRODUCER_TUNING_SKIP": "batch_append, send_before_wait"}).tuning_skip
    assert skipped == ("batch_append", "send_before_wait")
    with pytest.raises(ConfigError, match="PRODUCER_TUNING_SKIP names no tuning called nonsense"):
        Settings.from_env({"PRODUCER_TUNING_SKIP": "nonsense"})
