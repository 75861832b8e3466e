#!/bin/sh
# Integration tests: drive the built daemon on loopback with pytest.
# make check exports RELAY_BIN and RELAY_SRCDIR; otherwise derive them from
# this script's location (tests/integration/ in the source tree).
here=$(cd "$(dirname "$0")" && pwd)
: "${RELAY_SRCDIR:=$(cd "$here/../.." && pwd)}"
: "${RELAY_BIN:=$RELAY_SRCDIR/_build/src/pyrycode-relay}"
export RELAY_SRCDIR RELAY_BIN
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
    echo "run.sh: pytest not available for $PYTHON; skipping" >&2
    exit 77
fi
"$PYTHON" -m pytest -q -p no:cacheprovider "$RELAY_SRCDIR/tests/integration" "$@"
exit $?
