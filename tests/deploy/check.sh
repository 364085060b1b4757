#!/usr/bin/env bash
# tests/deploy/check.sh - `make check-deploy` (and the first step of `make test`): checks
# deploy/ with the tools Debian and npm ship, in a few seconds, without Docker or a cluster:
#
#   - every YAML and JSON file under deploy/ parses (Debian's python3-yaml, /usr/bin/python3:
#     `python3` on PATH may be a pyenv without it);
#   - check.py: alerts (severity, summary, description, runbook naming conveyorctl; every
#     alert fires and stays silent in alerts.test.yml), the dashboard (schemaVersion 39, uid,
#     data source by variable, seed 003's and the pipeline's panels), every metric name of
#     alerts.yml and the dashboard is in deploy/prometheus/METRICS.md, compose (depends_on
#     names services, health checks, secrets only from deploy/.env, a worker per job type),
#     Kubernetes structure and cross-references, the systemd units' hardening; then its
#     self-test: each of those checks catches a break made on purpose;
#   - promtool (Debian's prometheus package): check config, check rules, test rules
#     (alerts.test.yml), and every dashboard query parsed as PromQL;
#   - the Kubernetes API's JSON schemas (npm's kubernetes-models, installed into build/ops)
#     for every object of deploy/k8s;
#   - systemd-analyze verify on the units, and their exposure score (at most 2.0).
#
# Installs what it needs first (scripts/deps.sh ops: prometheus, python3-yaml, systemd,
# Node.js; then npm packages when tests/deploy/package.json changed). Prints one line per
# check and "N passed, M failed"; exits 1 when any failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/deploy
PY=/usr/bin/python3
NODEDIR=$ROOT/build/ops
OUT=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-check-deploy.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

passed=0 failed=0

# run NAME CMD...: run a check; its own "ok"/"FAIL"/"MISS" lines are counted, or, when it
# prints none, the check counts once by its exit status.
run() {
    local name=$1 out rc oks bads
    shift
    out=$("$@" 2>&1)
    rc=$?
    oks=$(grep -c '^ok ' <<<"$out")
    bads=$(grep -cE '^(FAIL|MISS)' <<<"$out")
    if [ "$oks" -eq 0 ] && [ "$bads" -eq 0 ]; then
        if [ $rc -eq 0 ]; then
            echo "ok   $name"
            oks=1
        else
            echo "FAIL $name"
            sed 's/^/       /' <<<"$out"
            bads=1
        fi
    else
        sed -E '/^(ok |FAIL|MISS)/!s/^/       /' <<<"$out"
        if [ $rc -ne 0 ] && [ "$bads" -eq 0 ]; then
            echo "FAIL $name (exit status $rc)"
            bads=1
        fi
    fi
    passed=$((passed + oks))
    failed=$((failed + bads))
}

# ---- tools ---------------------------------------------------------------------------------
bash "$ROOT/scripts/deps.sh" ops || { echo "check-deploy: cannot install its tools" >&2; exit 1; }
# npm installs again only when package.json changed since its last complete install
if ! cmp -s "$HERE/package.json" "$NODEDIR/package.installed.json"; then
    echo "check-deploy: npm installing kubernetes-models into $NODEDIR" >&2
    mkdir -p "$NODEDIR"
    rm -f "$NODEDIR/package.installed.json"
    cp "$HERE/package.json" "$NODEDIR/package.json"
    (cd "$NODEDIR" && npm install --no-audit --no-fund --omit=dev --no-package-lock \
        --loglevel=error >&2) || { echo "check-deploy: npm install failed" >&2; exit 1; }
    cp "$HERE/package.json" "$NODEDIR/package.installed.json"
fi

# ---- checks --------------------------------------------------------------------------------
P=$ROOT/deploy/prometheus
run "structure (check.py)" "$PY" -B "$HERE/check.py" "$ROOT" "$OUT"
run "check.py self-test" "$PY" -B "$HERE/check.py" --selftest "$ROOT"
run "promtool check config deploy/prometheus/prometheus.yml" \
    promtool check config "$P/prometheus.yml"
run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules "$P/alerts.yml"
run "promtool test rules deploy/prometheus/alerts.test.yml" promtool test rules "$P/alerts.test.yml"
if [ -s "$OUT/dashboard-rules.yml" ]; then
    run "promtool parses every dashboard query" promtool check rules "$OUT/dashboard-rules.yml"
fi
if [ -s "$OUT/k8s.json" ]; then
    run "Kubernetes schemas" env NODE_PATH="$NODEDIR/node_modules" node "$HERE/k8s_validate.js" \
        "$OUT/k8s.json"
fi

# systemd-analyze verify: the binaries are not installed here, which it reports; anything
# else it says (an unknown key, a bad value) fails.
units=("$ROOT"/deploy/*.service)
verify_units() {
    local out
    out=$(systemd-analyze verify --man=no "${units[@]}" 2>&1 |
        grep -vE 'Command /usr/local/bin/conveyor-[a-z]+ is not executable')
    [ -z "$out" ] || { echo "$out"; return 1; }
}
run "systemd-analyze verify deploy/*.service" verify_units
for u in "${units[@]}"; do
    run "systemd-analyze security $(basename "$u"): exposure 2.0 or less" \
        systemd-analyze security --offline=yes --threshold=20 "$u"
done

echo "check-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
