#!/usr/bin/env bash
# `make dev`: the whole bridge on one port, as in AWS but on this machine.
#
# Starts dynalite with its data under .local/dynalite (kept between runs), creates the tables,
# builds the functions and runs `cargo lambda watch` with the workspace router on
# 127.0.0.1:${INVOKE_PORT:-9000}; a ticker stands in for the one-minute schedule of `dispatch`.
# Ctrl-C stops everything it started.
#
#   DYNAMO_PORT      dynalite port (default 8000)
#   INVOKE_PORT      bridge port (default 9000)
#   BRIDGE_ENV_FILE  settings to run with (default infra/local.env)
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DYNAMO_PORT="${DYNAMO_PORT:-8000}"
INVOKE_PORT="${INVOKE_PORT:-9000}"
ENV_SOURCE="${BRIDGE_ENV_FILE:-infra/local.env}"
[[ -f "$ENV_SOURCE" ]] || die "no settings file $ENV_SOURCE"

ensure_cargo_lambda
ensure_node_deps

port_open "$DYNAMO_PORT" && die "port $DYNAMO_PORT is taken; choose another with DYNAMO_PORT=..."
port_open "$INVOKE_PORT" && die "port $INVOKE_PORT is taken; choose another with INVOKE_PORT=..."

GROUPS_STARTED=()
cleanup() {
  trap - INT TERM EXIT
  local pgid
  for pgid in "${GROUPS_STARTED[@]}"; do stop_group "$pgid"; done
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p .local/dynalite
start_dynalite "$DYNAMO_PORT" .local/dynalite.log --path .local/dynalite
GROUPS_STARTED+=("$DYNALITE_PID")
log "dynalite on 127.0.0.1:$DYNAMO_PORT (data in .local/dynalite)"

# The settings with this run's endpoint and an absolute rules path (the functions' working
# directory is the repository, but an absolute path reads the same from anywhere).
ENV_FILE=.local/dev.env
rules_file="$(sed -n 's/^RULES_FILE=//p' "$ENV_SOURCE" | tail -n 1)"
[[ -z "$rules_file" || "$rules_file" == /* ]] || rules_file="$ROOT/$rules_file"
{
  grep -v -E '^(AWS_ENDPOINT_URL_DYNAMODB|RULES_FILE)=' "$ENV_SOURCE"
  echo "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DYNAMO_PORT"
  [[ -z "$rules_file" ]] || echo "RULES_FILE=$rules_file"
} >"$ENV_FILE"
env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }

# The settings go to the functions only (cargo lambda's --env-file): exported here, RUST_LOG
# would also make cargo lambda itself log at that level.
log "creating tables $(env_value TICKETS_TABLE) and $(env_value USER_MAPPINGS_TABLE)"
(
  set -a
  # shellcheck source=infra/local.env
  source "$ENV_FILE"
  set +a
  unset RUST_LOG
  cargo run -q -p bridge-cli -- create-tables
)

# Built now, the first request starts a function instead of waiting for it to compile.
log "building the functions"
cargo build -q --workspace --bins

setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" --env-file "$ENV_FILE" &
WATCH_PID=$!
GROUPS_STARTED+=("$WATCH_PID")
wait_port "$INVOKE_PORT" 120 "$WATCH_PID" || die "cargo lambda watch did not start on port $INVOKE_PORT"

# EventBridge runs dispatch every minute in AWS; here a loop sends it the same scheduled event.
# shellcheck disable=SC2016 # expanded by the inner shell, on every tick
setsid bash -c '
  while sleep 60; do
    curl -s -o /dev/null -X POST -H "content-type: application/json" \
      "http://127.0.0.1:$1/2015-03-31/functions/dispatch/invocations" \
      -d "{\"version\":\"0\",\"id\":\"local\",\"detail-type\":\"Scheduled Event\",\"source\":\"aws.events\",\"account\":\"000000000000\",\"time\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"region\":\"us-east-1\",\"resources\":[],\"detail\":{}}" ||
      true
  done' dispatch-ticker "$INVOKE_PORT" &
GROUPS_STARTED+=("$!")

cat <<EOF

The bridge is ready on http://127.0.0.1:$INVOKE_PORT (every route of the SPEC, same paths as in AWS).
Settings: $ENV_SOURCE. Dispatch runs every minute. Ctrl-C stops everything.

Dataphin's Test Connection:
  curl -s -X POST "http://127.0.0.1:$INVOKE_PORT/dataphin/bpms/check/connect?accessToken=$(env_value DATAPHIN_ACCESS_TOKEN)&timestamp=\$(date +%s000)" -d '{"checkEvent":"connectivity"}'

The ops API:
  curl -s -H "Authorization: Bearer $(env_value ADMIN_TOKEN)" http://127.0.0.1:$INVOKE_PORT/rules

EOF

# Returns when the watch server stops (or at once on Ctrl-C, through the traps).
wait "$WATCH_PID"
