"""The server runtime (gunicorn and gevent): the bodies of the hooks gunicorn.conf.py names, the gevent worker's
patching, the metrics directory, and (tuning/) the changes to gunicorn's and gevent's internals."""
