#!/usr/bin/env bash
# `make dev`: the whole bridge on one port, as in AWS but on this machine (SPEC 10), and the
# sandbox (SPEC 11) that plays DingTalk, a company BPM and Dataphin around it.
#
# Starts dynalite with its data under $BRIDGE_DATA_DIR/dynalite (kept between runs), creates the
# tables, builds the workspace, starts `bridge sandbox` and `cargo lambda watch` with the
# workspace router behind `bridge gateway` (API Gateway's stand-in: it hands non-UTF-8 text bodies
# to the functions base64-encoded, as API Gateway does, where cargo lambda alone answers 500),
# seeds the fixtures' user mappings and the sample rules, and runs a ticker in place of the
# schedule of `dispatch` (failed runs in $BRIDGE_DATA_DIR/dead-letters.jsonl, the dead-letter
# queue's stand-in). Ctrl-C or SIGTERM stops everything it started.
#
#   BRIDGE_ENV_FILE         settings the functions run with (default infra/local.env);
#                           ${SANDBOX_PORT}, ${INVOKE_PORT}, ${DYNAMO_PORT}, ${DYNAMO_ENDPOINT}
#                           in its values are filled in from these knobs
#   INVOKE_PORT             the bridge's port (default 9000)
#   DYNAMO_PORT             dynalite's port (default 8000)
#   BRIDGE_DATA_DIR         local state: dynalite data, sandbox.json, logs (default .local)
#   DISPATCH_EVERY_SECONDS  how often the scheduled work runs (default 60)
#   SANDBOX_PORT            the sandbox's port (default 9400; 0 starts no sandbox)
#   DYNAMO_ENDPOINT         the DynamoDB endpoint the functions use (default: the dynalite)
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DYNAMO_PORT="${DYNAMO_PORT:-8000}"
INVOKE_PORT="${INVOKE_PORT:-9000}"
SANDBOX_PORT="${SANDBOX_PORT:-9400}"
DISPATCH_EVERY_SECONDS="${DISPATCH_EVERY_SECONDS:-60}"
DATA_DIR="${BRIDGE_DATA_DIR:-.local}"
DYNAMO_ENDPOINT="${DYNAMO_ENDPOINT:-http://127.0.0.1:$DYNAMO_PORT}"
ENV_SOURCE="${BRIDGE_ENV_FILE:-infra/local.env}"
[[ -f "$ENV_SOURCE" ]] || die "no settings file $ENV_SOURCE"
for knob in DYNAMO_PORT INVOKE_PORT SANDBOX_PORT DISPATCH_EVERY_SECONDS; do
  [[ "${!knob}" =~ ^[0-9]+$ ]] || die "$knob must be a number, not '${!knob}'"
done
((DISPATCH_EVERY_SECONDS > 0)) || die "DISPATCH_EVERY_SECONDS must be at least 1"
mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
# Where cargo puts the binaries: CARGO_TARGET_DIR, else what cargo itself says (a config's
# target-dir, a wrapper's per-checkout directory), else target/.
TARGET_DIR="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null ||
  echo "$ROOT/target")}"
started_at=$(date +%s)

ensure_cargo_lambda
ensure_node_deps

port_open "$DYNAMO_PORT" && die "port $DYNAMO_PORT is taken; choose another with DYNAMO_PORT=..."
port_open "$INVOKE_PORT" && die "port $INVOKE_PORT is taken; choose another with INVOKE_PORT=..."
if ((SANDBOX_PORT != 0)); then
  port_open "$SANDBOX_PORT" && die "port $SANDBOX_PORT is taken; choose another with SANDBOX_PORT=... (0: no sandbox)"
fi

GROUPS_STARTED=()
# The process groups this stack runs in, one per line in $DATA_DIR/stack.pids (dev.sh's own
# first): what to signal to stop, or kill, the whole stack from outside.
track_group() {
  GROUPS_STARTED+=("$1")
  printf '%s\n' "$$" "${GROUPS_STARTED[@]}" >"$DATA_DIR/stack.pids"
}
cleanup() {
  trap - INT TERM EXIT
  local pgid
  for pgid in "${GROUPS_STARTED[@]}"; do stop_group "$pgid"; done
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DATA_DIR/dynalite"
start_dynalite "$DYNAMO_PORT" "$DATA_DIR/dynalite.log" --path "$DATA_DIR/dynalite" \
  --streams "$DATA_DIR/streams"
track_group "$DYNALITE_PID"
log "dynalite on 127.0.0.1:$DYNAMO_PORT (data in $DATA_DIR/dynalite)"

# The settings of this run: the knobs filled into the sample's placeholders, this run's DynamoDB
# endpoint, and an absolute rules path (the same from any working directory).
ENV_FILE="$DATA_DIR/dev.env"
rules_file="$(sed -n 's/^RULES_FILE=//p' "$ENV_SOURCE" | tail -n 1)"
[[ -z "$rules_file" || "$rules_file" == /* ]] || rules_file="$ROOT/$rules_file"
{
  grep -v -E '^(AWS_ENDPOINT_URL_DYNAMODB|RULES_FILE)=' "$ENV_SOURCE" |
    sed -e "s|\${SANDBOX_PORT}|$SANDBOX_PORT|g" -e "s|\${INVOKE_PORT}|$INVOKE_PORT|g" \
      -e "s|\${DYNAMO_PORT}|$DYNAMO_PORT|g" -e "s|\${DYNAMO_ENDPOINT}|$DYNAMO_ENDPOINT|g"
  echo "AWS_ENDPOINT_URL_DYNAMODB=$DYNAMO_ENDPOINT"
  [[ -z "$rules_file" ]] || echo "RULES_FILE=$rules_file"
} >"$ENV_FILE"
env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }
if ((SANDBOX_PORT == 0)) && grep -q "127.0.0.1:0[/]*" "$ENV_FILE"; then
  log "warning: SANDBOX_PORT=0 but $ENV_SOURCE points at the sandbox; those calls will fail"
fi

# The settings go to the functions only (cargo lambda's --env-file): exported here, RUST_LOG
# would also make cargo lambda itself log at that level.
run_with_settings() (
  set -a
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  set +a
  unset RUST_LOG
  "$@"
)

# Built now, the first request starts a function instead of waiting for it to compile.
log "building the workspace binaries"
cargo build -q --workspace --bins

log "creating tables $(env_value TICKETS_TABLE) and $(env_value USER_MAPPINGS_TABLE)"
run_with_settings "$TARGET_DIR/debug/bridge" create-tables >/dev/null

if ((SANDBOX_PORT != 0)); then
  # exec keeps the background pid: setsid makes it the leader of the group stop_group stops.
  (
    set -a
    # shellcheck source=/dev/null
    source "$ENV_FILE"
    set +a
    unset RUST_LOG
    export SANDBOX_PORT INVOKE_PORT BRIDGE_DATA_DIR="$DATA_DIR"
    exec setsid "$TARGET_DIR/debug/bridge" sandbox
  ) >"$DATA_DIR/sandbox.log" 2>&1 &
  SANDBOX_PID=$!
  track_group "$SANDBOX_PID"
  wait_port "$SANDBOX_PORT" 30 "$SANDBOX_PID" ||
    die "the sandbox did not start on port $SANDBOX_PORT (log: $DATA_DIR/sandbox.log)"
  log "sandbox on 127.0.0.1:$SANDBOX_PORT (state in $DATA_DIR/sandbox.json, log $DATA_DIR/sandbox.log)"
fi

# cargo lambda on a port of its own; the gateway in front of it serves INVOKE_PORT.
WATCH_PORT="$(internal_port "$INVOKE_PORT")"
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" --env-file "$ENV_FILE" &
WATCH_PID=$!
track_group "$WATCH_PID"
wait_port "$WATCH_PORT" 120 "$WATCH_PID" || die "cargo lambda watch did not start on port $WATCH_PORT"
RUST_LOG=warn setsid "$TARGET_DIR/debug/bridge" gateway "$INVOKE_PORT" "$WATCH_PORT" \
  >"$DATA_DIR/gateway.log" 2>&1 &
GATEWAY_PID=$!
track_group "$GATEWAY_PID"
wait_port "$INVOKE_PORT" 30 "$GATEWAY_PID" ||
  die "the gateway did not start on port $INVOKE_PORT (log: $DATA_DIR/gateway.log)"

BRIDGE="http://127.0.0.1:$INVOKE_PORT"
ACCESS_TOKEN="$(env_value DATAPHIN_ACCESS_TOKEN)"
ADMIN="Authorization: Bearer $(env_value ADMIN_TOKEN)"

# Ready (SPEC 10) = Dataphin's Test Connection answers success.
ready=""
for ((i = 0; i < 600; i++)); do
  if curl -s -m 30 -X POST -H 'content-type: application/json' -d '{"checkEvent":"connectivity"}' \
    "$BRIDGE/dataphin/bpms/check/connect?accessToken=$ACCESS_TOKEN&timestamp=$(date +%s000)" |
    grep -q '"checkResult":"success"'; then
    ready=1
    break
  fi
  kill -0 "$WATCH_PID" 2>/dev/null || die "cargo lambda watch stopped"
  sleep 0.2
done
[[ -n "$ready" ]] || die "the bridge did not answer Test Connection with success"

# cargo lambda starts a function on its first request: start each now (in parallel), so the first
# DingTalk event or withdrawal is answered at once, not after a `cargo run`.
WARMING=()
for warm in "GET /approvals" "POST /callback/webhook" "POST /approvals/warm-up/withdraw"; do
  curl -s -o /dev/null -m 120 -X "${warm% *}" -H "$ADMIN" "$BRIDGE${warm#* }" &
  WARMING+=("$!")
done
wait_warm() { local job; for job in "${WARMING[@]}"; do wait "$job" 2>/dev/null || true; done; }

# The fixtures' users (tests/src/harness.rs), mapped to backend ids the sandbox knows.
curl -sf -X POST -H "$ADMIN" -H 'content-type: text/csv' "$BRIDGE/user-mappings/import" \
  --data-binary @- >/dev/null <<'CSV' || die "seeding the user mappings failed"
tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id
300073302,300000913,0917452163-1398,alice.wang,dt-alice,1001
300073302,300000914,0917452163-2044,bob.li,dt-bob,1001
300073302,300000920,0917452163-3310,carol.zhao,dt-carol,1001
300073302,300000925,0917452163-4471,dave.sun,dt-dave,1001
300073302,300000930,0917452163-5000,erin.sec,dt-erin,1001
CSV
# The sample rules: loaded from RULES_FILE when none are stored yet; a stored document is kept.
rules="$(curl -sf -H "$ADMIN" "$BRIDGE/rules" || true)"
if [[ -n "$rules_file" ]] && ! grep -q '"id"' <<<"$rules"; then
  curl -sf -X PUT -H "$ADMIN" -H 'content-type: application/json' --data-binary @"$rules_file" \
    "$BRIDGE/rules" >/dev/null || die "storing the rules of $rules_file failed"
fi
log "seeded 5 user mappings (tenant 300073302) and the rules"
wait_warm

# EventBridge runs dispatch on a schedule in AWS; here a loop sends it the same scheduled event,
# and a failed run lands in dead-letters.jsonl as it lands in the dead-letter queue there.
# The tickets table's stream, handed to dispatch as the template's TicketStream event does.
RUST_LOG=warn setsid "$TARGET_DIR/debug/bridge" streams "$(env_value TICKETS_TABLE)" "$WATCH_PORT" \
  "$DATA_DIR" >"$DATA_DIR/streams.log" 2>&1 &
track_group "$!"
log "stream runner: $DATA_DIR/streams -> dispatch (log $DATA_DIR/streams.log)"

setsid bash infra/scripts/dispatch_ticker.sh "$INVOKE_PORT" "$DISPATCH_EVERY_SECONDS" \
  "$DATA_DIR/dead-letters.jsonl" &
track_group "$!"

echo
echo "Ready in $(($(date +%s) - started_at)) s. The bridge: $BRIDGE (every route of the SPEC)."
echo "Settings: $ENV_SOURCE (backend $(env_value BACKEND)). Data: $DATA_DIR. Dispatch every ${DISPATCH_EVERY_SECONDS}s."
if ((SANDBOX_PORT != 0)); then
  cat <<EOF

Open http://127.0.0.1:$SANDBOX_PORT : submit a sample, approve it, see what Dataphin receives.

The API way (submit fixture 02 as Dataphin would; then GET /api/instances, act on its tasks):
  curl -s -X POST http://127.0.0.1:$SANDBOX_PORT/api/dataphin/submit --data-binary @fixtures/submissions/02_physical_table_high.json
EOF
else
  cat <<EOF

Dataphin's Test Connection:
  curl -s -X POST "$BRIDGE/dataphin/bpms/check/connect?accessToken=$ACCESS_TOKEN&timestamp=\$(date +%s000)" -d '{"checkEvent":"connectivity"}'
EOF
fi
echo "Ctrl-C stops everything."
echo

# Returns when the watch server stops (or at once on Ctrl-C, through the traps).
wait "$WATCH_PID"
