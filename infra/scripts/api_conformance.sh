#!/usr/bin/env bash
# The ops routes of openapi.yaml against a running local stack, with schemathesis (pinned in
# infra/requirements-dev.txt): no server errors, replies conform to the document (status codes,
# content types, bodies). Not yet a check of infra/scripts/test.sh: its first run found server
# errors to fix first (non-UTF-8 JSON bodies answered 500 by the local runtime), and the shared
# machine's rebuilds under `cargo lambda watch` time requests out. Run it by hand.
#
# Starts its own stack through `make dev`'s script on free ports, in a new data folder, without a
# sandbox; stops it (its whole process group) on exit. Bounded: examples per operation, a time
# limit on the stack's start and on the whole run.
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

MAX_EXAMPLES="${CONFORMANCE_MAX_EXAMPLES:-15}"
RUN_SECONDS="${CONFORMANCE_SECONDS:-600}"
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

# Ready when Test Connection answers success (SPEC 10).
ready=""
for ((i = 0; i < 3000; i++)); do
  kill -0 "$STACK_PID" 2>/dev/null || break
  if curl -sf -m 5 -X POST -d '{"checkEvent":"connectivity"}' \
    "http://127.0.0.1:$INVOKE_PORT/dataphin/bpms/check/connect?accessToken=$(sed -n 's/^DATAPHIN_ACCESS_TOKEN=//p' infra/local.env)&timestamp=$(date +%s000)" |
    grep -q '"checkResult":"success"'; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  tail -n 40 "$DATA_DIR/stack.log" >&2 || true
  die "the local stack did not become ready"
fi

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
