"""gunicorn.conf.py with its second worker slow to start, as when opening its Kafka producer takes long."""

import time
from pathlib import Path

SLOW_START_S = 1.0

_deployed = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
exec(compile(_deployed.read_text(), str(_deployed), "exec"))  # every setting and hook as deployed
_deployed_post_fork = post_fork  # noqa: F821 (defined by the exec above)


def post_fork(server, worker):
    """The deployed post_fork, after a pause in the second worker spawned."""
    if worker.age == 2:
        time.sleep(SLOW_START_S)
    _deployed_post_fork(server, worker)
