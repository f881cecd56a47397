# lab/guest/job.sh: what the lab guest does, sourced by the host-written /out/job.sh (which sets ZL_*).
# Each task writes its results straight to /out and is skipped when they are already there (a retry after
# a guest death resumes). ZL_TASKS: minimal wait-time hold-time stock perf v6 peers-minimal peers-wait-time
# peers-hold-time series overhead.
set -u
OUT=/out
EVENTS_minimal="kmem:mm_zone_lock_contended"
EVENTS_wait_time="kmem:mm_zone_lock_contended kmem:mm_zone_locked"
EVENTS_hold_time="kmem:mm_zone_lock_contended kmem:mm_zone_locked kmem:mm_zone_lock_unlock"
EVENTS_stock="lock:contention_begin lock:contention_end"
# Page churn (processes) plus pipe resizing (high-order allocations and frees): all three call sites contend.
WORK="zl-workload -p $ZL_PROCS -P $ZL_PIPERS -m $ZL_MB -s $ZL_SECONDS"
# The selftest's shape for the peer tasks: threads mapping 2 MB with MAP_POPULATE, plus the pipe resizers,
# with an idle lead-in and lead-out (the window's edges go there).
PEER_WORK="zl-workload -t -p $ZL_PROCS -P $ZL_PIPERS -m $ZL_MB -s $ZL_SECONDS -l $ZL_LEAD"

say() { echo "ZLPERF-LAB: $*" > /dev/console; echo "$(cut -d' ' -f1 /proc/uptime) $*" >> $OUT/progress.log; }
events_of() { eval echo "\$EVENTS_$(echo "$1" | tr - _)"; }
note_cmd() { printf '%s\t%s\n' "$1" "$2" >> $OUT/commands.log; }

# The real zlperf recorder when this checkout has it; else trace-cmd record, said so in recorder.txt.
if zlperf record --help > /dev/null 2>&1; then
    RECORDER=zlperf
    echo "zlperf record ($(zlperf --version 2>&1))" > $OUT/recorder.txt
else
    RECORDER=trace-cmd
    echo "trace-cmd record (this checkout has no 'zlperf record' yet)" > $OUT/recorder.txt
fi

# record PROFILE OUTPUT CMD...: one recording of CMD with PROFILE's events.
record() {
    prof=$1 out=$2; shift 2
    if [ $RECORDER = zlperf ]; then
        set -- zlperf record --profile "$prof" -o "$out" -- "$@"
    else
        ev=""
        for e in $(events_of "$prof"); do ev="$ev -e $e"; done
        stack=""
        [ "$prof" = stock ] && stack="-T"
        set -- trace-cmd record -q -b 4096 $stack $ev -o "$out" "$@"
    fi
    echo "+ $*"
    LAST_CMD="$*"
    "$@"
}

setup() {
    uname -a > $OUT/uname.txt
    cat /proc/cmdline >> $OUT/uname.txt
    for n in /sys/devices/system/node/node*; do echo "$(basename $n): cpus $(cat $n/cpulist)"; done > $OUT/numa.txt
    # the guest's zones and their sizes (pages), for the zones a recording may name
    awk '/^Node/ {z = $2 ":" $4} /^ +present/ && z {print z, "present", $2; z = ""}' /proc/zoneinfo \
        | tr -d , > $OUT/zones.txt
    OLD_PCP=$(cat /proc/sys/vm/percpu_pagelist_high_fraction)
    echo "$ZL_PCP_FRACTION" > /proc/sys/vm/percpu_pagelist_high_fraction
    echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
    if [ ! -d $OUT/formats ]; then
        mkdir -p /tmp/formats
        cp /sys/kernel/tracing/events/header_page /tmp/formats/header_page
        cp /sys/kernel/tracing/events/header_event /tmp/formats/header_event
        for f in /sys/kernel/tracing/events/kmem/mm_zone_lock*/format /sys/kernel/tracing/events/lock/contention_*/format \
                 /sys/kernel/tracing/events/zone_lock/*/format; do
            [ -f "$f" ] || continue
            d=$(dirname "$f"); cp "$f" "/tmp/formats/$(basename "$(dirname "$d")")_$(basename "$d").format"
        done
        cp -r /tmp/formats $OUT/formats
    fi
    [ -f $OUT/kallsyms.gz ] || gzip -c /proc/kallsyms > $OUT/kallsyms.gz
    { bpftrace --version 2>&1; trace-cmd --version 2>&1 | head -2; perf --version; zlperf --version
      ls -l /sys/kernel/btf/vmlinux; ls /sys/kernel/tracing/events/kmem/mm_zone_locked/; } > $OUT/tools.txt 2>&1
}

task_profile() {
    prof=$1
    [ -f $OUT/$prof.dat ] && { say "skip $prof (done)"; return 0; }
    say "record $prof"
    rm -f /tmp/$prof.dat
    record "$prof" /tmp/$prof.dat $WORK > /tmp/$prof.log 2>&1
    rc=$?
    cat /tmp/$prof.log
    cp /tmp/$prof.log $OUT/$prof.record.log
    [ $rc = 0 ] && [ -f /tmp/$prof.dat ] || { say "record $prof FAILED rc=$rc"; return 1; }
    note_cmd $prof.dat "$LAST_CMD"
    # stock: the zone names zlperf's bpftrace side program found (a sidecar beside the recording)
    [ -f /tmp/$prof.dat.zones.json ] && cp /tmp/$prof.dat.zones.json $OUT/$prof.dat.zones.json
    cp /tmp/$prof.dat $OUT/$prof.dat.tmp && mv $OUT/$prof.dat.tmp $OUT/$prof.dat
    sync
    rm -f /tmp/$prof.dat
    zlperf report $OUT/$prof.dat > $OUT/$prof.report.txt 2>&1
    zlperf report --json $OUT/$prof.dat > $OUT/$prof.report.json 2> $OUT/$prof.report.err
    say "done $prof: $(ls -l $OUT/$prof.dat | awk '{print $5}') bytes; zlperf report rc=$?"
}

# The perf backend of `zlperf record` (perf.data + the .kallsyms zlperf saves beside it).
task_perf() {
    [ -f $OUT/full.perf.data ] && { say "skip perf (done)"; return 0; }
    say "record perf"
    rm -f /tmp/full.perf.data /tmp/full.perf.kallsyms
    LAST_CMD="zlperf record --profile hold-time --backend perf -o /tmp/full.perf.data -- $WORK"
    echo "+ $LAST_CMD"
    $LAST_CMD > /tmp/perf.log 2>&1
    rc=$?
    cat /tmp/perf.log; cp /tmp/perf.log $OUT/perf.record.log
    [ $rc = 0 ] || { say "perf record FAILED rc=$rc"; return 1; }
    note_cmd full.perf.data "$LAST_CMD"
    cp /tmp/full.perf.kallsyms $OUT/full.perf.kallsyms 2>/dev/null
    cp /tmp/full.perf.data $OUT/full.perf.data.tmp && mv $OUT/full.perf.data.tmp $OUT/full.perf.data
    sync
    rm -f /tmp/full.perf.data
    zlperf report --kallsyms $OUT/full.perf.kallsyms $OUT/full.perf.data > $OUT/perf.report.txt 2>&1
    say "done perf; zlperf report rc=$?"
}

# A version 6 trace.dat, through a recipe that extends hold-time (lab/guest/recipes/hold-time-v6.yaml).
task_v6() {
    [ -f $OUT/full.v6.dat ] && { say "skip v6 (done)"; return 0; }
    say "record v6"
    rm -f /tmp/full.v6.dat
    LAST_CMD="zlperf record --recipe /lab/recipes/hold-time-v6.yaml -o /tmp/full.v6.dat -- $WORK"
    echo "+ $LAST_CMD"
    $LAST_CMD > /tmp/v6.log 2>&1
    rc=$?
    cat /tmp/v6.log
    [ $rc = 0 ] || { say "v6 record FAILED rc=$rc"; return 1; }
    note_cmd full.v6.dat "$LAST_CMD"
    cp /tmp/full.v6.dat $OUT/full.v6.dat.tmp && mv $OUT/full.v6.dat.tmp $OUT/full.v6.dat
    sync
    rm -f /tmp/full.v6.dat
    zlperf report $OUT/full.v6.dat > $OUT/v6.report.txt 2>&1
    say "done v6; zlperf report rc=$?"
}

# The rival zone_lock:* events (a --series kernel) next to the seed's, in one file: both ABIs see the same locks.
task_series() {
    [ -f $OUT/series.dat ] && { say "skip series (done)"; return 0; }
    [ -d /sys/kernel/tracing/events/zone_lock ] || { say "series: this kernel has no zone_lock events"; return 1; }
    say "record series"
    cmd="trace-cmd record -q -b 4096 -e zone_lock:* -e kmem:mm_zone_locked -e kmem:mm_zone_lock_unlock -o /tmp/series.dat $WORK"
    echo "+ $cmd"
    $cmd > /tmp/series.log 2>&1
    rc=$?
    cat /tmp/series.log
    [ $rc = 0 ] || { say "series record FAILED rc=$rc"; return 1; }
    note_cmd series.dat "$cmd"
    cp /tmp/series.dat $OUT/series.dat.tmp && mv $OUT/series.dat.tmp $OUT/series.dat
    sync
    rm -f /tmp/series.dat
    zlperf report $OUT/series.dat > $OUT/series.report.txt 2>&1
    say "done series; zlperf report rc=$?"
}

# The patch's selftest (bpftrace one-liners) and hist triggers counting beside `zlperf record` (lab/guest/peers.py);
# the host compares them in one window (lab/lab_peers.py).
task_peers() {
    prof=$1
    [ -d $OUT/peers-$prof ] && { say "skip peers-$prof (done)"; return 0; }
    say "peers $prof"
    rm -rf /tmp/peers-$prof
    python3 /lab/peers.py --profile $prof --out /tmp/peers-$prof --slot-ns $ZL_SLOT_NS -- $PEER_WORK \
        > /tmp/peers-$prof.log 2>&1
    rc=$?
    cat /tmp/peers-$prof.log
    cp /tmp/peers-$prof.log /tmp/peers-$prof/peers.log 2>/dev/null
    if [ $rc != 0 ]; then
        say "peers $prof FAILED rc=$rc"
        rm -rf $OUT/failed-peers-$prof; cp -r /tmp/peers-$prof $OUT/failed-peers-$prof 2>/dev/null
        return 1
    fi
    rm -rf $OUT/peers-$prof.tmp; cp -r /tmp/peers-$prof $OUT/peers-$prof.tmp && mv $OUT/peers-$prof.tmp $OUT/peers-$prof
    sync
    rm -rf /tmp/peers-$prof
    say "done peers $prof"
}

# The live features as peers: `zlperf top` and `zlperf exporter` (scraped once) beside `zlperf record`, the
# selftest and the hist triggers, every one counting only the workload's tasks (lab/guest/peers.py --live).
task_live() {
    [ -d $OUT/live ] && { say "skip live (done)"; return 0; }
    say "live hold-time"
    rm -rf /tmp/live
    python3 /lab/peers.py --profile hold-time --comm zl-workload --live --out /tmp/live --slot-ns $ZL_SLOT_NS \
        -- $PEER_WORK > /tmp/live.log 2>&1
    rc=$?
    cat /tmp/live.log
    cp /tmp/live.log /tmp/live/peers.log 2>/dev/null
    if [ $rc != 0 ]; then
        say "live FAILED rc=$rc"
        rm -rf $OUT/failed-live; cp -r /tmp/live $OUT/failed-live 2>/dev/null
        return 1
    fi
    rm -rf $OUT/live.tmp; cp -r /tmp/live $OUT/live.tmp && mv $OUT/live.tmp $OUT/live
    sync
    rm -rf /tmp/live
    say "done live"
}

# Throughput of the workload alone and under each profile, interleaved run by run; one JSON line per run.
task_overhead() {
    run=1
    while [ $run -le $ZL_RUNS ]; do
        for prof in $ZL_OVERHEAD_PROFILES; do
            if grep -q "\"profile\":\"$prof\",\"run\":$run," $OUT/overhead.jsonl 2>/dev/null; then continue; fi
            rm -f /tmp/w.json /tmp/o.dat
            if [ $prof = none ]; then
                $WORK > /tmp/w.json 2>/tmp/o.log
            else
                record "$prof" /tmp/o.dat sh -c "$WORK > /tmp/w.json" > /tmp/o.log 2>&1
            fi
            rc=$?
            if [ $rc != 0 ] || [ ! -s /tmp/w.json ]; then
                say "overhead $prof run $run FAILED rc=$rc"; cat /tmp/o.log; continue
            fi
            [ $prof != none ] && [ $run = 1 ] && note_cmd "overhead-$prof" "$LAST_CMD"
            echo "{\"profile\":\"$prof\",\"run\":$run,$(sed 's/^{//' /tmp/w.json)" >> $OUT/overhead.jsonl
            sync
            say "overhead $prof run $run: $(cat /tmp/w.json)"
            rm -f /tmp/o.dat
        done
        run=$((run + 1))
    done
}

say "job start: tasks $ZL_TASKS, recorder $RECORDER"
setup
failed=0
for t in $ZL_TASKS; do
    case $t in
        minimal|wait-time|hold-time|stock) task_profile $t || failed=1 ;;
        perf) task_perf || failed=1 ;;
        v6) task_v6 || failed=1 ;;
        series) task_series || failed=1 ;;
        peers-minimal|peers-wait-time|peers-hold-time) task_peers ${t#peers-} || failed=1 ;;
        live) task_live || failed=1 ;;
        overhead) task_overhead || failed=1 ;;
        *) say "unknown task $t"; failed=1 ;;
    esac
done
echo "$OLD_PCP" > /proc/sys/vm/percpu_pagelist_high_fraction
say "job end (failed=$failed)"
exit $failed
