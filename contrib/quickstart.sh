#!/bin/sh
# quickstart.sh: set up a fresh Debian or Ubuntu machine for pyrycode-relay.
#
#   contrib/quickstart.sh run    install build dependencies, build, and run
#                                the relay on 127.0.0.1:8080 (metrics on
#                                127.0.0.1:9090) in the foreground
#   contrib/quickstart.sh test   install dependencies, build, and run every
#                                test: make check (unit suites, RFC 6455
#                                probe, integration tests), then the same
#                                under ASan+UBSan, the unit suites under
#                                valgrind, a short run of each fuzz target
#                                and a smoke run of the benchmark
#   contrib/quickstart.sh check  only the first stage: make check
#   contrib/quickstart.sh deps   only install the dependencies
#   contrib/quickstart.sh build  only configure and build (in ./build)
#
# The build happens out of tree in ./build so the source tree stays clean.
# Packages are Debian's; nothing is downloaded from anywhere else.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"

# what building needs, and what the tests add (sanitizer runtime, fuzzer,
# valgrind, pytest, and the nginx and HAProxy the benchmark and the
# sharding test run)
BUILD_PACKAGES="build-essential autoconf automake libtool pkg-config \
libev-dev libwslay-dev check libssl-dev"
TEST_PACKAGES="libjansson-dev python3 python3-pytest \
python3-prometheus-client curl valgrind clang libclang-rt-14-dev \
nginx-light haproxy"

# deps PACKAGE...: install those not installed yet
deps() {
    missing=""
    for p in "$@"; do
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

# build DIR [configure options...]: configure once, then make
build() {
    dir=$1
    shift
    cd "$top"
    [ -x configure ] || autoreconf -fi
    mkdir -p "$dir"
    cd "$dir"
    [ -f Makefile ] || "$top/configure" "$@"
    make -j"$(nproc)"
}

# check DIR: make check there, printing the logs of what failed
check() {
    cd "$1"
    status=0
    make -j"$(nproc)" check || status=$?
    if [ "$status" -ne 0 ]; then
        for f in tests/*.log tests/integration/*.log; do
            [ -f "$f" ] || continue
            echo "==== $f"
            tail -n 300 "$f"
        done
    fi
    return "$status"
}

# One closing line for the make check of DIR: "tests: N passed, N failed"
summary() {
    checks=$(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' \
        "$1/tests/check_relay.log" 2>/dev/null | tail -n 1)
    pyline=$(grep -E '^[0-9]+ passed|^=* ?[0-9]+ (passed|failed)' \
        "$1/tests/integration/run.sh.log" 2>/dev/null | tail -n 1)
    set -- $checks
    total=${1:-0}
    failed=$(( ${2:-0} + ${3:-0} ))
    passed=$(( total - failed ))
    p=$(echo "$pyline" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
    f=$(echo "$pyline" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
    k=$(echo "$pyline" | sed -n 's/.*\b\([0-9][0-9]*\) skipped.*/\1/p')
    passed=$(( passed + ${p:-0} ))
    failed=$(( failed + ${f:-0} ))
    echo
    echo "tests: $passed passed, $failed failed, ${k:-0} skipped"
}

stage() {
    echo
    echo "=== $*"
}

# the stages after make check; each fails the run on its first error
extra_stages() {
    stage "make check under AddressSanitizer and UndefinedBehaviorSanitizer"
    build "$top/build-asan" --enable-werror --enable-asan
    (
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
        check "$top/build-asan"
    )

    stage "unit suites under valgrind"
    cd "$build"
    CK_FORK=no valgrind --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite --quiet tests/check_relay

    stage "fuzz targets, 20 s each from the seed corpora"
    (
        export CC=clang
        build "$top/build-fuzz" --enable-werror --enable-fuzz
    )
    for t in http json envelope; do
        work=$(mktemp -d)
        mkdir "$work/corpus"
        if ! "$top/build-fuzz/tests/fuzz/fuzz_$t" -max_total_time=20 \
            "$work/corpus" "$top/tests/fuzz/corpus/$t" >"$work/log" 2>&1
        then
            tail -n 60 "$work/log"
            echo "fuzz_$t: crashed or failed (reproducer in $work)" >&2
            exit 1
        fi
        tail -n 1 "$work/log"
        rm -rf "$work"
    done

    if [ -x "$top/contrib/bench/run.sh" ]; then
        stage "benchmark smoke run"
        BUILD="$build" "$top/contrib/bench/run.sh" --quick
    fi
}

case "${1:-}" in
deps)
    deps $BUILD_PACKAGES $TEST_PACKAGES
    ;;
build)
    deps $BUILD_PACKAGES
    build "$build"
    ;;
run)
    deps $BUILD_PACKAGES
    build "$build"
    exec "$build/src/pyrycode-relay" --insecure-listen 127.0.0.1:8080 \
        --metrics-listen 127.0.0.1:9090
    ;;
check)
    deps $BUILD_PACKAGES $TEST_PACKAGES
    build "$build" --enable-werror
    check "$build"
    ;;
test)
    deps $BUILD_PACKAGES $TEST_PACKAGES
    build "$build" --enable-werror
    stage "make check"
    check "$build"
    extra_stages
    stage "all stages passed"
    summary "$build"
    ;;
*)
    echo "usage: $0 run|test|check|deps|build" >&2
    exit 2
    ;;
esac
