#!/usr/bin/env bash
# ./run.sh         Serve the Producer API on :8001 in the foreground; without KAFKA_BOOTSTRAP_SERVERS it first
#                  fetches and starts a local Kafka broker on localhost:9092. Ctrl-C stops what it started.
# ./run.sh test    Run the test suite (unit tests, then integration tests against a real broker), then the
#                  stock-path tests again with PRODUCER_TUNING=off (every change to a library's internals off).
# Both create .venv and install the pinned requirements on first use.
set -euo pipefail
cd "$(dirname "$0")"

ensure_venv() {  # $1: requirements file to install
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "run.sh: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    local stamp=".venv/.installed-$1" wanted
    wanted=$(cat requirements*.txt | sha256sum)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "run.sh: installing $1 into .venv ..." >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$1"
        echo "$wanted" > "$stamp"
    fi
}

serve() {
    local kafka_port=${LOCAL_KAFKA_PORT:-9092} started_kafka=0
    if ! [[ "$kafka_port" =~ ^[0-9]+$ ]] || [ "$kafka_port" -lt 1 ] || [ "$kafka_port" -gt 65534 ]; then
        echo "run.sh: LOCAL_KAFKA_PORT must be a port number from 1 to 65534 (its controller takes the next one), got '$kafka_port'" >&2
        exit 1
    fi
    ensure_venv requirements.txt
    if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        .venv/bin/python -m local_kafka status --port "$kafka_port" >/dev/null || started_kafka=1
        .venv/bin/python -m local_kafka start --port "$kafka_port"
        export KAFKA_BOOTSTRAP_SERVERS="localhost:$kafka_port"
        if [ "$started_kafka" = 1 ]; then
            # Expanded now: the function's locals are gone when the EXIT trap runs.
            trap ".venv/bin/python -m local_kafka stop --port $kafka_port" EXIT
        fi
    fi
    # Not exec: the EXIT trap must run after gunicorn stops, to stop the broker this script started. Ctrl-C
    # and SIGTERM both become gunicorn's graceful shutdown: in-flight requests finish, producers flush. gunicorn
    # runs in a session of its own, so the terminal's Ctrl-C reaches only this script: sent to gunicorn too, it
    # would be SIGINT, gunicorn's quick shutdown, which fails the requests still waiting on Kafka.
    local status=0 gunicorn_pid
    setsid .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app &
    gunicorn_pid=$!
    trap "kill -TERM $gunicorn_pid 2>/dev/null" INT TERM
    while kill -0 "$gunicorn_pid" 2>/dev/null; do
        wait "$gunicorn_pid" || status=$?
    done
    return "$status"
}

run_tests() {
    ensure_venv requirements-dev.txt
    if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        .venv/bin/python -m local_kafka fetch >/dev/null  # the integration tests start their own broker
    fi
    if [ $# -gt 0 ]; then
        exec .venv/bin/python -m pytest "$@"
    fi
    .venv/bin/python -m pytest
    echo "run.sh: the stock-path tests again, on the libraries as shipped (PRODUCER_TUNING=off)" >&2
    PRODUCER_TUNING=off .venv/bin/python -m pytest -m stock_path tests/integration
}

case "${1:-serve}" in
    serve) serve ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: ./run.sh [serve | test [pytest arguments]]" >&2; exit 2 ;;
esac
