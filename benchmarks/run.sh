#!/usr/bin/env bash
# One command for all benchmarks: bash benchmarks/run.sh [--quick] [--repeats N] [--no-queueserver]
# Installs redis-server from the OS packages if it is missing (needs root), makes .venv-bench,
# installs the project with its `bench` extra, runs python -m benchmarks.run from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is needed: sudo apt-get install -y redis-server" >&2
        exit 1
    fi
fi
[ -x .venv-bench/bin/python ] || python3 -m venv .venv-bench
.venv-bench/bin/pip install -q -e '.[bench]'
exec .venv-bench/bin/python -m benchmarks.run "$@"
