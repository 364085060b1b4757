#!/usr/bin/env bash
# Run each named libFuzzer harness (build/fuzz/fuzz_<name>) for FUZZ_SECONDS
# and print, per harness: executions, executions per second, corpus size and
# crashes. Exit 1 when any harness crashed (or failed to run).
#
# Seeds are read from tests/fuzz/corpus/<name>/ and never written; new inputs
# go to build/fuzz/corpus/<name>/ (kept between runs), crash, leak and timeout
# inputs to build/fuzz/crashes/<name>/, the full log to build/fuzz/<name>.log.
# tests/fuzz/<name>.dict is used as a dictionary and tests/fuzz/<name>.options
# adds flags (one per line); tests/fuzz/lsan.supp lists leaks that are not
# ours. Run from the repository root.
set -uo pipefail
secs=${FUZZ_SECONDS:-60}
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
[ $# -gt 0 ] || { echo "usage: run.sh NAME..." >&2; exit 2; }
rows=()
failed=0
for name in "$@"; do
    bin=build/fuzz/fuzz_$name
    work=build/fuzz/corpus/$name
    crashes=build/fuzz/crashes/$name
    log=build/fuzz/$name.log
    mkdir -p "$work" "$crashes"
    opts=(-max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$crashes/")
    [ -f "tests/fuzz/$name.dict" ] && opts+=(-dict="tests/fuzz/$name.dict")
    if [ -f "tests/fuzz/$name.options" ]; then
        mapfile -t more < <(grep -v '^#' "tests/fuzz/$name.options" | grep .)
        opts+=("${more[@]}")
    fi
    before=$(find "$crashes" -type f | wc -l)
    echo "fuzz: $name for ${secs}s (log: $log)"
    nice -n 10 "$bin" "${opts[@]}" "$work" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    after=$(find "$crashes" -type f | wc -l)
    found=$((after - before))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -ne 0 ]; then
        failed=1
        [ $found -eq 0 ] && found="?"
        echo "fuzz: $name FAILED (exit $rc):"
        grep -m3 -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+:)|artifact_prefix|Test unit written' "$log" |
            sed 's/^/    /'
    fi
    rows+=("$(printf '%-8s %12s %8s %16s %8s' "$name" "${execs:-?}" "${rate:-?}" "${corp:-?}" \
        "$found")")
done
echo
printf '%-8s %12s %8s %16s %8s\n' harness executions exec/s 'corpus (n/size)' crashes
printf '%s\n' "${rows[@]}"
[ $failed -eq 0 ] || echo "fuzz: crash inputs are in build/fuzz/crashes/; replay one with build/fuzz/fuzz_NAME FILE"
exit $failed
