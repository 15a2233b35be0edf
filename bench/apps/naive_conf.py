"""gunicorn settings of baseline C: the project's gunicorn.conf.py, with hooks that open the naive producer."""

import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
_settings = _project["settings"]

# Server socket, worker count and logging as the service's; the worker class is the first version, whatever
# the service runs on (its default became gevent): gthread workers x 16 threads.
bind = _project["bind"]
workers = _project["workers"]
worker_class = "gthread"
threads = 16
timeout = _project["timeout"]
graceful_timeout = _project["graceful_timeout"]
keepalive = _project["keepalive"]
loglevel = _project["loglevel"]
accesslog = _project["accesslog"]
errorlog = _project["errorlog"]


# Hooks
def post_fork(server, worker):
    """Create this worker's producer after the fork."""
    from bench.apps import naive_app

    naive_app.open_producer(_settings.bootstrap_servers)


def worker_exit(server, worker):
    """Flush and close this worker's producer."""
    from bench.apps import naive_app

    naive_app.close_producer()
