#!/bin/sh
# quickstart.sh: set up a fresh Debian or Ubuntu machine for pyrycode-relay.
#
#   contrib/quickstart.sh run    install build dependencies, build, and run
#                                the relay on 127.0.0.1:8080 (metrics on
#                                127.0.0.1:9090) in the foreground
#   contrib/quickstart.sh test   install dependencies, build, and run every
#                                unit and integration test (make check)
#   contrib/quickstart.sh deps   only install the dependencies
#   contrib/quickstart.sh build  only configure and build (in ./build)
#
# The build happens out of tree in ./build so the source tree stays clean.
# Packages are Debian's; nothing is downloaded from anywhere else.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"

PACKAGES="build-essential autoconf automake libtool pkg-config \
libev-dev libwslay-dev check libssl-dev libjansson-dev \
python3 python3-pytest python3-prometheus-client curl"

deps() {
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
}

build() {
    cd "$top"
    autoreconf -fi
    mkdir -p "$build"
    cd "$build"
    [ -f Makefile ] || "$top/configure" --enable-werror
    make -j"$(nproc)"
}

case "${1:-}" in
deps)
    deps
    ;;
build)
    deps
    build
    ;;
run)
    deps
    build
    exec "$build/src/pyrycode-relay" --insecure-listen 127.0.0.1:8080 \
        --metrics-listen 127.0.0.1:9090
    ;;
test)
    deps
    build
    cd "$build"
    status=0
    make -j"$(nproc)" check || status=$?
    if [ "$status" -ne 0 ]; then
        for f in tests/*.log tests/integration/*.log; do
            [ -f "$f" ] || continue
            echo "==== $f"
            tail -n 200 "$f"
        done
    fi
    exit "$status"
    ;;
*)
    echo "usage: $0 run|test|deps|build" >&2
    exit 2
    ;;
esac
