"""A worker's tuning (producer_api.server.tuning.install_in_worker): what PRODUCER_TUNING and _SKIP leave on."""

from types import SimpleNamespace

import pytest
from gunicorn import util
from gunicorn.http import wsgi

from producer_api.server.tuning import (
    close_when_asked,
    headers_with_body,
    install_in_worker,
    json_error_pages,
)

# What applies to a gthread worker; idle_close_on_stop is the gevent worker's.
GTHREAD = ["client_timeout", "headers_with_body", "json_error_pages", "close_when_asked",
           "no_continue_over_limit"]


@pytest.fixture(autouse=True)
def gunicorn_restored(monkeypatch):
    """What a worker's tuning changes in gunicorn for the whole process, taken back after each test."""
    monkeypatch.setattr(util, "write_error", util.write_error)
    monkeypatch.setattr(wsgi, "create", wsgi.create)
    monkeypatch.setattr(wsgi.Response, "process_headers", wsgi.Response.process_headers)
    monkeypatch.setattr(wsgi.Response, "write", wsgi.Response.write)


def gthread_worker():
    """The parts of gunicorn's ThreadWorker the worker's tuning looks for."""
    def handle(conn):
        return False

    return SimpleNamespace(tpool=object(), handle=handle, nr_conns=0, cfg=SimpleNamespace(worker_class_str="gthread"))


def test_with_tuning_on_every_change_that_fits_the_worker_is_applied(make_settings):
    worker = gthread_worker()
    handle = worker.handle
    assert install_in_worker(worker, make_settings(tuning=True)) == GTHREAD
    assert worker.handle is not handle
    assert util.write_error is json_error_pages.write_json_error
    assert wsgi.Response.process_headers is close_when_asked.process_headers_honouring_close
    assert wsgi.Response.write is headers_with_body._write_headers_with_body


def test_with_tuning_off_gunicorn_works_as_shipped(make_settings):
    worker = gthread_worker()
    handle, write_error, create = worker.handle, util.write_error, wsgi.create
    assert install_in_worker(worker, make_settings(tuning=False)) == []
    assert worker.handle is handle and util.write_error is write_error and wsgi.create is create


@pytest.mark.parametrize("skipped", GTHREAD)
def test_a_skipped_change_alone_is_left_out(make_settings, skipped):
    applied = install_in_worker(gthread_worker(), make_settings(tuning=True, tuning_skip=(skipped,)))
    assert applied == [name for name in GTHREAD if name != skipped]
