#!/usr/bin/env bash
# The ops routes of openapi.yaml against a running local stack, with schemathesis (pinned in
# infra/requirements-dev.txt): no server errors, replies conform to the document (status codes,
# content types, bodies). A check of `make test` (infra/scripts/test.sh); runs by hand too.
#
# Starts its own stack through `make dev`'s script with SPEC 10's knobs (free ports, a new data
# folder, no sandbox), after the workspace binaries are built; stops it (its whole process group)
# on exit. Bounded: CONFORMANCE_MAX_EXAMPLES per operation (default 10), CONFORMANCE_START_SECONDS
# for the stack to become ready (default 120) and CONFORMANCE_SECONDS for schemathesis (default 90).
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

MAX_EXAMPLES="${CONFORMANCE_MAX_EXAMPLES:-10}"
START_SECONDS="${CONFORMANCE_START_SECONDS:-120}"
RUN_SECONDS="${CONFORMANCE_SECONDS:-90}"
ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN=//p' infra/local.env)"
[[ -n "$ADMIN_TOKEN" ]] || die "infra/local.env has no ADMIN_TOKEN"

DATA_DIR="$(mktemp -d -t bridge-conformance.XXXXXX)"
INVOKE_PORT="$(free_port)"
DYNAMO_PORT="$(free_port)"
STACK_PID=""
cleanup() {
  trap - INT TERM EXIT
  [[ -z "$STACK_PID" ]] || stop_group "$STACK_PID"
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "local stack for schemathesis on 127.0.0.1:$INVOKE_PORT (data in $DATA_DIR)"
INVOKE_PORT="$INVOKE_PORT" DYNAMO_PORT="$DYNAMO_PORT" SANDBOX_PORT=0 BRIDGE_DATA_DIR="$DATA_DIR" \
  setsid bash infra/scripts/dev.sh >"$DATA_DIR/stack.log" 2>&1 &
STACK_PID=$!

# Ready when make dev says so (every function started by its warm-up and seeding: cargo lambda
# starts a function on its first request, which can take longer than a request's timeout) and
# Test Connection answers success (SPEC 10).
ready=""
started=$(date +%s)
while (($(date +%s) - started < START_SECONDS)); do
  kill -0 "$STACK_PID" 2>/dev/null || break
  if grep -q '^Ready in' "$DATA_DIR/stack.log" &&
    curl -sf -m 5 -X POST -d '{"checkEvent":"connectivity"}' \
    "http://127.0.0.1:$INVOKE_PORT/dataphin/bpms/check/connect?accessToken=$(sed -n 's/^DATAPHIN_ACCESS_TOKEN=//p' infra/local.env)&timestamp=$(date +%s000)" |
    grep -q '"checkResult":"success"'; then
    ready=1
    break
  fi
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  tail -n 40 "$DATA_DIR/stack.log" >&2 || true
  die "the local stack did not become ready in ${START_SECONDS}s"
fi
log "stack ready in $(($(date +%s) - started)) s; schemathesis: $MAX_EXAMPLES examples per operation, at most ${RUN_SECONDS}s"

timeout "$RUN_SECONDS" "${SCHEMATHESIS:-$ROOT/.venv/bin/st}" run openapi.yaml \
  --url "http://127.0.0.1:$INVOKE_PORT" \
  --include-path-regex '^/(approvals|user-mappings|rules)' \
  -H "Authorization: Bearer $ADMIN_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 20 \
  --workers 1 \
  --suppress-health-check all \
  --no-color
