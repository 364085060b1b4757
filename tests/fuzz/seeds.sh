#!/usr/bin/env bash
# Regenerate the generated part of tests/fuzz/corpus/http/: every request of
# the bad-input matrix (tests/fixtures/http/) as raw HTTP bytes, the
# README's examples and HTTP framing cases (frame-*). Other files (no fix-, readme- or frame- prefix) and
# regression inputs are left alone. Run from the repository root.
#
# Fixture bodies are shrunk to the harness's limits (body 4096 bytes, batch 8):
# "@repeat N c" becomes 4100 bytes, "@batch N {}" 9 elements.
set -euo pipefail
out=tests/fuzz/corpus/http
mkdir -p "$out"
rm -f "$out"/fix-* "$out"/readme-* "$out"/frame-*
KEY=fuzz-admin-key
NOOPKEY=fuzz-noop-key
ACTKEY=fuzz-activation-key

# req NAME METHOD PATH BODY [HEADER...]: one HTTP/1.1 request with Content-Length
req() {
    local name=$1 method=$2 path=$3 body=$4
    shift 4
    {
        printf '%s %s HTTP/1.1\r\nHost: api\r\n' "$method" "$path"
        for h in "$@"; do printf '%s\r\n' "$h"; done
        [ -n "$body" ] && printf 'Content-Length: %d\r\n' "${#body}"
        printf '\r\n%s' "$body"
    } >"$out/$name"
}

for f in tests/fixtures/http/*; do
    name=fix-$(basename "$f")
    mapfile -t lines < <(sed -n '/^--- expect/q;p' "$f" | grep -v '^#')
    read -r method path <<<"${lines[0]}"
    headers=()
    i=1
    while [ $i -lt ${#lines[@]} ] && [ -n "${lines[$i]}" ]; do
        h=${lines[$i]//\$NOOPKEY/$NOOPKEY}
        headers+=("${h//\$KEY/$KEY}")
        i=$((i + 1))
    done
    body=
    for ((i = i + 1; i < ${#lines[@]}; i++)); do
        l=${lines[$i]}
        if [[ $l =~ ^@repeat\ [0-9]+\ (.)$ ]]; then
            body+=$(head -c 4100 /dev/zero | tr '\0' "${BASH_REMATCH[1]}")
        elif [[ $l =~ ^@batch\ [0-9]+\ (.*)$ ]]; then
            e=${BASH_REMATCH[1]}
            body+="[$e,$e,$e,$e,$e,$e,$e,$e,$e]"
        else
            body+=$l
        fi
    done
    req "$name" "$method" "$path" "$body" "${headers[@]}"
done

A="Authorization: Bearer $KEY"
J="Content-Type: application/json"
T=6f1c3e1a-2b4d-4c5e-8f90-123456789abc
req readme-job-noop POST /v1/jobs/noop '{}' "$A" "$J"
req readme-job-idem POST /v1/jobs/noop '{"a":1}' "$A" "$J" "Idempotency-Key: order-42"
req readme-job-delay POST '/v1/jobs/noop?delay_ms=30000&max_attempts=5' '{}' "$A" "$J"
req readme-job-run-at POST '/v1/jobs/noop?run_at=2026-12-01T09:00:00Z' '{}' "$A" "$J"
req readme-job-run-at-offset POST '/v1/jobs/noop?run_at=2026-12-01T09:00:00.250+02:00' '{}' \
    "$A" "$J"
req readme-job-trace POST /v1/jobs/order-fetch '{"order":"x"}' "$A" "$J" \
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
req readme-batch POST /v1/jobs/noop/batch '[{},{},{}]' "$A" "$J" "Idempotency-Key: b-1"
req readme-batch-act POST /v1/jobs/activation/batch \
    '[{"user_id":7,"offer_id":2},{"user_id":"8","offer_id":3}]' "$A" "$J"
req readme-job-get GET "/v1/jobs/$T" '' "$A"
req readme-dead GET '/v1/dead?type=activation&limit=50' '' "$A"
req readme-dead-retry POST "/v1/dead/$T/retry" '' "$A"
req readme-queues GET /v1/queues '' "$A"
req readme-workers GET /v1/workers '' "$A"
req readme-health GET /health ''
req readme-ready GET /ready ''
req readme-api-health GET /api/v1/health ''
req readme-metrics GET /metrics ''
req readme-activation POST /api/v1/activation/ '{"user_id":7,"offer_id":2}' \
    "Authorization: Bearer $ACTKEY" "$J"
req readme-activation-txn POST /api/v1/activation/ \
    "{\"user_id\":7,\"offer_id\":2,\"transaction_id\":\"$T\"}" "$A" "$J"
req readme-activation-status GET "/api/v1/activation/status/$T/" '' "$A"
req readme-offers GET /api/v1/offers/ '' "$A"
req readme-offer GET /api/v1/offers/2/ '' "$A"
req readme-account GET /api/v1/accounts/7/ '' "$A"
req readme-account-txns GET /api/v1/accounts/7/transactions/ '' "$A"

# raw NAME TEXT: bytes as printf renders TEXT (framing: pipelining, chunks, lengths)
raw() { printf "$2" >"$out/$1"; }
raw frame-pipelined "GET /health HTTP/1.1\r\nHost: a\r\n\r\nPOST /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n$A\r\n$J\r\nContent-Length: 2\r\n\r\n{}GET /v1/queues HTTP/1.1\r\nHost: a\r\n$A\r\n\r\n"
raw frame-chunked "POST /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n$A\r\n$J\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n"
raw frame-two-lengths "POST /api/v1/activation/ HTTP/1.1\r\nHost: a\r\n$A\r\n$J\r\nContent-Length: 26\r\nContent-Length: 27\r\n\r\n{\"user_id\":7,\"offer_id\":2} "
raw frame-length-and-chunked "POST /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n$A\r\n$J\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
raw frame-obs-fold "POST /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n$A\r\nContent-Type:\r\n application/json\r\nContent-Length: 2\r\n\r\n{}"
raw frame-http10 "GET /health HTTP/1.0\r\n\r\n"
raw frame-http10-keepalive "POST /v1/jobs/noop HTTP/1.0\r\nConnection: keep-alive\r\n$A\r\n$J\r\nContent-Length: 2\r\n\r\n{}GET /ready HTTP/1.0\r\n\r\n"
raw frame-expect "POST /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n$A\r\n$J\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"
raw frame-head "HEAD /health HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n"
raw frame-options "OPTIONS /v1/jobs/noop HTTP/1.1\r\nHost: a\r\n\r\n"
raw frame-absolute-uri "GET http://api/v1/queues?x=1 HTTP/1.1\r\nHost: a\r\n$A\r\n\r\n"
raw frame-percent-path "GET /v1/jobs/%%36f1c3e1a-2b4d-4c5e-8f90-123456789abc HTTP/1.1\r\nHost: a\r\n$A\r\n\r\n"
raw frame-bad-line "GET  /health  HTTP/1.1\r\n\r\n"
raw frame-lf-only "POST /v1/jobs/noop HTTP/1.1\nHost: a\n$A\n$J\nContent-Length: 2\n\n{}"
raw frame-connection-close "GET /health HTTP/1.1\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n"
