#!/usr/bin/env bash
#
# run.sh: measure pyrycode-relay against nginx as a plain WebSocket proxy,
# on this machine, in one run, and print one table.
#
# Targets: the relay with --workers 1 and 2, and Debian's nginx with
# worker_processes 1 and 2 proxying phone-like clients to the echo peer of
# relay-bench (the byte-pipe baseline: what forwarding costs with no
# routing at all).  For each: round trips/s and latency at 64 B, 1 KiB and
# 16 KiB (median of 3 runs), the target's CPU per forwarded message (utime
# + stime of all its processes over the window), syscalls per message, and
# memory per idle phone at K = 1000, 5000, 15000.  It builds nothing: it
# expects a built tree (BUILD, default ./build or ./_build).  It starts its
# own relay, nginx and echo peer on loopback and stops exactly those.
#
# usage: contrib/bench/run.sh [--quick | --callgrind] [BUILD]
#   --quick      smoke mode for CI: tiny durations, one run, small K (< 60 s)
#   --callgrind  only the repeatable A/B figure: instructions per forwarded
#                message in the worker of a --workers 1 relay under
#                valgrind, from two counted runs (their difference cancels
#                start-up and connection costs)

set -u

QUICK=0
CALLGRIND=0
BUILD=""
for a in "$@"; do
    case "$a" in
    --quick) QUICK=1 ;;
    --callgrind) CALLGRIND=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) BUILD="$a" ;;
    esac
done
if [ -z "$BUILD" ]; then
    for d in ./build ./_build; do
        if [ -x "$d/src/pyrycode-relay" ]; then BUILD="$d"; break; fi
    done
fi
RELAY="${BUILD:-.}/src/pyrycode-relay"
BENCH="${BUILD:-.}/contrib/bench/relay-bench"
for f in "$RELAY" "$BENCH"; do
    if [ ! -x "$f" ]; then
        echo "run.sh: $f not found: build first (make), or pass BUILD" >&2
        exit 2
    fi
done

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light \
            >/dev/null || { echo "run.sh: cannot install nginx-light" >&2;
                            exit 2; }
    else
        echo "run.sh: nginx missing (apt-get install nginx-light)" >&2
        exit 2
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PY=$(command -v python3)

if [ $QUICK = 1 ]; then
    REPS=1; DUR=1; WARM=0.5; IDLE_K="200"; HOLD=1; CHURN_DUR=1
else
    REPS=3; DUR=4; WARM=2; IDLE_K="1000 5000 15000"; HOLD=4; CHURN_DUR=4
fi
SIZES="64 1024 16384"

WORK=$(mktemp -d /tmp/relay-bench.XXXXXX)
# the raw JSON lines outlive the run, for a second look
RESULTS="${RESULTS:-$WORK.jsonl}"
: > "$RESULTS"
PORT_BASE=$((21000 + RANDOM % 20000))
TPORT=$PORT_BASE                # the target's public port
EPORT=$((PORT_BASE + 1))        # the echo peer behind nginx
TARGET_PID=""
ECHO_PID=""
NET=$((20 + RANDOM % 40))       # each generator run gets a fresh 127.N/16

# Stop exactly what this script started, by PID.
stop_target() {
    local p
    for p in $TARGET_PID $ECHO_PID; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in $TARGET_PID $ECHO_PID; do
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    TARGET_PID=""
    ECHO_PID=""
}
cleanup() {
    stop_target
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sets SRC; not called in a subshell, or the count would be lost and the
# relay's per-IP upgrade limit would refuse the next run.
next_src() {
    NET=$((NET + 1))
    if [ $NET -gt 250 ]; then NET=20; fi
    SRC="127.$NET.0.1"
}

# The master and every worker: CPU and memory are summed over all of them.
target_pids() {
    local kids
    kids=$(ps -o pid= --ppid "$TARGET_PID" 2>/dev/null | tr -s ' \n' ' ')
    echo "$TARGET_PID $kids" | xargs | tr ' ' ','
}

wait_port() {
    local i
    for i in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "run.sh: nothing listens on port $1" >&2
    return 1
}

start_relay() {
    "$RELAY" --insecure-listen "127.0.0.1:$TPORT" --metrics-listen '' \
        --workers "$1" --log-level warn >"$WORK/relay.log" 2>&1 &
    TARGET_PID=$!
    wait_port "$TPORT" && sleep 0.3
}

start_nginx() {
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $1;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events {
    worker_connections 19000;
}
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$TPORT reuseport;
        location / {
            proxy_pass http://127.0.0.1:$EPORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
    "$BENCH" --serve-echo "$EPORT" --procs "$1" --duration 3600 \
        >"$WORK/echo.log" 2>&1 &
    ECHO_PID=$!
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
        -e "$WORK/nginx/logs/error.log" -g 'daemon off;' \
        >"$WORK/nginx.log" 2>&1 &
    TARGET_PID=$!
    wait_port "$EPORT" && wait_port "$TPORT" && sleep 0.3
}

# run_bench NAME TARGETKIND [relay-bench options...]: one JSON line saved
run_bench() {
    local name=$1 kind=$2 out
    shift 2
    next_src
    out=$(timeout 300 "$BENCH" --port "$TPORT" --target "$kind" \
        --src-base "$SRC" --pids "$(target_pids)" --label "$name" \
        "$@" 2>>"$WORK/bench.err")
    if [ -z "$out" ]; then
        echo "run.sh: relay-bench failed for $name" >&2
        return 1
    fi
    echo "$out" >>"$RESULTS"
    echo "$out" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read());
print("  %-28s rtt/s %9.0f  p50 %7.0f us  cpu %6.2f us/msg  errors %d" % (
 r["label"], r["rtt_per_s"], r["lat_us"]["p50"],
 r.get("target_cpu_us_per_msg", 0), r["errors"]["total"]))'
}

# PSS of every target process (KiB) and the kernel's TCP memory (KiB).
mem_pss_kib() {
    local p t=0 v
    for p in $(target_pids | tr ',' ' '); do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo $t
}
mem_sock_kib() {
    awk -v pg="$(getconf PAGESIZE)" '/^TCP:/ {
        for (i = 1; i < NF; i++) if ($i == "mem") print $(i+1) * pg / 1024 }' \
        /proc/net/sockstat
}

run_idle() {
    local name=$1 kind=$2 k=$3 procs=1 pss0 sock0 pss1 sock1 out ready
    ready="$WORK/ready.$name.$k"
    if [ "$k" -gt 6000 ]; then procs=2; fi
    pss0=$(mem_pss_kib); sock0=$(mem_sock_kib)
    next_src
    timeout 300 "$BENCH" --port "$TPORT" --target "$kind" --idle "$k" \
        --procs $procs --duration $((HOLD + 6)) --src-base "$SRC" \
        --concurrency 64 --ready-file "$ready" --label "$name-idle-$k" \
        >"$WORK/idle.out" 2>>"$WORK/bench.err" &
    local gen=$!
    for _ in $(seq 1 1200); do
        [ -e "$ready" ] && break
        kill -0 $gen 2>/dev/null || break
        sleep 0.1
    done
    sleep $HOLD
    pss1=$(mem_pss_kib); sock1=$(mem_sock_kib)
    wait $gen
    out=$(cat "$WORK/idle.out")
    if [ -z "$out" ]; then
        echo "run.sh: idle run failed for $name K=$k" >&2
        return 1
    fi
    echo "$out" | "$PY" -c '
import json, sys
r = json.loads(sys.stdin.read())
r["k"] = int(sys.argv[1]); r["pss0_kib"] = int(sys.argv[2])
r["sock0_kib"] = float(sys.argv[3]); r["pss1_kib"] = int(sys.argv[4])
r["sock1_kib"] = float(sys.argv[5])
print(json.dumps(r))
print("  %-28s phones %6d  connect/s %8.0f  pss %7.1f MiB  errors %d" % (
    r["label"], r["phones_open"], r["connect_per_s"], r["pss1_kib"] / 1024,
    r["errors"]["total"]), file=sys.stderr)
' "$k" "$pss0" "$sock0" "$pss1" "$sock1" >>"$RESULTS"
}

measure() {
    local name=$1 kind=$2 s rep procs
    # relay: binaries and phones share 2 generators; nginx: 1 generator
    # plus the echo peer, so both sides run two peer processes
    if [ "$kind" = relay ]; then procs=2; else procs=1; fi
    for s in $SIZES; do
        for rep in $(seq 1 $REPS); do
            run_bench "$name-$s-$rep" "$kind" --servers 8 --phones 4 \
                --window 4 --procs $procs --size "$s" --duration $DUR \
                --warmup $WARM
        done
    done
    if [ $QUICK = 0 ]; then
        if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
            run_bench "$name-sys-1024" "$kind" --servers 8 --phones 4 \
                --window 4 --procs $procs --size 1024 --duration $DUR \
                --warmup $WARM --perf-syscalls
        fi
        run_bench "$name-churn" "$kind" --servers 4 --phones 8 --churn \
            --duration $CHURN_DUR --warmup 1
    fi
    for k in $IDLE_K; do
        # nginx holds two descriptors per phone: one worker cannot fit 15000
        if [ "$kind" = echo ] && [ "$3" = 1 ] && [ "$k" -gt 9000 ]; then
            echo "  $name-idle-$k skipped: $((2 * k)) fds > RLIMIT_NOFILE"
            continue
        fi
        run_idle "$name" "$kind" "$k"
    done
}


# One counted run of a valgrind'ed relay; prints "IR FORWARDED".
callgrind_once() {
    local m=$1 size=$2 out wpid ir fwd
    rm -f "$WORK"/callgrind.out.*
    valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$RELAY" --insecure-listen "127.0.0.1:$TPORT" --metrics-listen '' \
        --workers 1 --log-level warn >"$WORK/relay.log" 2>&1 &
    TARGET_PID=$!
    wait_port "$TPORT" || return 1
    sleep 1
    wpid=$(ps -o pid= --ppid "$TARGET_PID" | xargs)
    next_src
    out=$(timeout 600 "$BENCH" --port "$TPORT" --servers 1 --phones 2 \
        --window 1 --size "$size" --messages "$m" --setup-timeout 60 \
        --duration 300 \
        --src-base "$SRC" --label "callgrind-$m" 2>>"$WORK/bench.err")
    stop_target
    fwd=$(echo "$out" | "$PY" -c 'import json,sys;
r=json.loads(sys.stdin.read()); print(int(r["forwarded"]),
 r["errors"]["total"])')
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' \
        "$WORK/callgrind.out.$wpid" 2>/dev/null)
    if [ -n "${CG_KEEP:-}" ]; then
        cp "$WORK/callgrind.out.$wpid" "$CG_KEEP"
    fi
    echo "${ir:-0} $fwd"
}

if [ $CALLGRIND = 1 ]; then
    command -v valgrind >/dev/null || { echo "run.sh: no valgrind" >&2;
                                        exit 2; }
    echo "callgrind: relay --workers 1, 1 id, 2 phones, window 1"
    for size in 64 1024 16384; do
        set -- $(callgrind_once 200 $size)
        ir1=$1; f1=$2
        CG_KEEP="$WORK/../relay-callgrind.$size.out" \
            callgrind_once 1200 $size >"$WORK/cg2"
        set -- $(cat "$WORK/cg2")
        ir2=$1; f2=$2; e2=$3
        "$PY" -c 'import sys; a=[float(x) for x in sys.argv[1:]];
print("  %5d B: %.0f instructions per forwarded message"
      " (worker Ir %.0f - %.0f over %d - %d messages, errors %d)" % (
 a[0], (a[1]-a[2])/(a[3]-a[4]), a[1], a[2], a[3], a[4], a[5]))' \
            $size "$ir2" "$ir1" "$f2" "$f1" "$e2"
    done
    echo "profiles of the longer runs: $(dirname "$WORK")/relay-callgrind.*.out"
    echo "  (callgrind_annotate FILE | head -40)"
    exit 0
fi

echo "relay-bench: results in $RESULTS" >&2
for w in 1 2; do
    echo "relay --workers $w"
    start_relay $w || exit 1
    measure "relay-w$w" relay $w
    stop_target
    echo "nginx worker_processes $w"
    start_nginx $w || exit 1
    measure "nginx-w$w" echo $w
    stop_target
done

"$PY" - "$RESULTS" "$QUICK" <<'EOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
quick = sys.argv[2] == "1"
by = {r["label"]: r for r in rows}
targets = ["relay-w1", "nginx-w1", "relay-w2", "nginx-w2"]


def med(name, size, key, sub=None):
    vals = []
    for r in rows:
        lab = r["label"]
        if not lab.startswith("%s-%s-" % (name, size)):
            continue
        if lab.split("-")[-1] in ("sys",):
            continue
        v = r[key] if sub is None else r[key][sub]
        vals.append(v)
    return statistics.median(vals) if vals else float("nan")


print()
print("throughput (closed loop: 8 ids x 4 phones, 4 in flight each;"
      " median of %d)" % (1 if quick else 3))
print("%-9s %6s %9s %9s %8s %8s %8s %8s %9s %7s" % (
    "target", "size", "rtt/s", "fwd/s", "p50 us", "p99 us", "p99.9",
    "max us", "cpu us/m", "errors"))
for t in targets:
    for s in (64, 1024, 16384):
        errs = sum(r["errors"]["total"] for r in rows
                   if r["label"].startswith("%s-%d-" % (t, s)))
        print("%-9s %6d %9.0f %9.0f %8.0f %8.0f %8.0f %8.0f %9.2f %7d" % (
            t, s, med(t, s, "rtt_per_s"), med(t, s, "fwd_msgs_per_s"),
            med(t, s, "lat_us", "p50"), med(t, s, "lat_us", "p99"),
            med(t, s, "lat_us", "p99.9"), med(t, s, "lat_us", "max"),
            med(t, s, "target_cpu_us_per_msg"), errs))

print()
print("per forwarded message at 1 KiB: syscalls (perf, all kinds),"
      " syscr+syscw (/proc/PID/io); churn")
print("%-9s %10s %11s %12s" % ("target", "syscalls", "syscr+syscw",
                                "churn conn/s"))
for t in targets:
    s = by.get(t + "-sys-1024")
    c = by.get(t + "-churn")
    print("%-9s %10s %11s %12s" % (
        t, "%.2f" % s["target_syscalls_per_msg"]
        if s and "target_syscalls_per_msg" in s else "-",
        "%.2f" % s["target_syscrw_per_msg"] if s else "-",
        "%.0f" % c["churn_per_s"] if c else "-"))

print()
print("memory per idle phone: (PSS of all target processes + kernel TCP"
      " memory) growth / K")
print("%-9s %6s %8s %10s %10s %12s %9s" % (
    "target", "K", "phones", "PSS MiB", "KiB/phone", "sock KiB/ph",
    "conn/s"))
for t in targets:
    for r in rows:
        if not r["label"].startswith(t + "-idle-"):
            continue
        k = r["k"]
        dp = (r["pss1_kib"] - r["pss0_kib"]) / k
        ds = (r["sock1_kib"] - r["sock0_kib"]) / k
        print("%-9s %6d %8d %10.1f %10.2f %12.2f %9.0f" % (
            t, k, r["phones_open"], r["pss1_kib"] / 1024, dp + ds, ds,
            r["connect_per_s"]))

print()
print("relay/nginx ratios (same worker count; < 1 favours the relay)")
for w in (1, 2):
    for s in (64, 1024, 16384):
        a, b = "relay-w%d" % w, "nginx-w%d" % w
        print("  workers %d %6d B: rtt/s %.2f  cpu/msg %.2f  p99 %.2f" % (
            w, s, med(a, s, "rtt_per_s") / med(b, s, "rtt_per_s"),
            med(a, s, "target_cpu_us_per_msg")
            / med(b, s, "target_cpu_us_per_msg"),
            med(a, s, "lat_us", "p99") / med(b, s, "lat_us", "p99")))
r = med("relay-w1", 1024, "target_cpu_us_per_msg") / \
    med("nginx-w1", 1024, "target_cpu_us_per_msg")
print("relay/nginx cpu-per-message at 1 KiB: %.2f" % r)
EOF
