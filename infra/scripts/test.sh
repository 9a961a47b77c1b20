#!/usr/bin/env bash
# `make test` (and CI): every check of the project, from a bare checkout.
#
# Installs what is missing (cargo-lambda, dynalite, the pinned Python tools in .venv), starts an
# in-memory dynalite on a free port for the tests, then runs formatting, clippy, the whole test
# suite, schemathesis against a local stack (infra/scripts/api_conformance.sh), the rules sample
# validation, cfn-lint and `sam validate --lint`. Every check runs even
# after one fails; the exit status is non-zero if any failed.
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_cargo_lambda
ensure_node_deps
ensure_venv
ensure_chromium

DYNALITE_LOG="$(mktemp -t bridge-dynalite.XXXXXX.log)"
STREAMS_DIR="$(mktemp -d -t bridge-streams.XXXXXX)"
DYNALITE_PID=""
cleanup() {
  trap - INT TERM EXIT
  [[ -z "$DYNALITE_PID" ]] || stop_group "$DYNALITE_PID"
  rm -rf "$DYNALITE_LOG" "$STREAMS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DYNAMO_PORT="$(free_port)"
# In memory, and tables become ACTIVE after 20 ms instead of 500 ms (still not instantly); the
# tables' stream records go to STREAMS_DIR, where each test's stream runner reads its own table's.
start_dynalite "$DYNAMO_PORT" "$DYNALITE_LOG" --createTableMs 20 --deleteTableMs 20 --updateTableMs 20 \
  --streams "$STREAMS_DIR"
log "dynalite for the tests on 127.0.0.1:$DYNAMO_PORT (streams in $STREAMS_DIR)"

export BRIDGE_TEST_DYNAMODB="http://127.0.0.1:$DYNAMO_PORT"
export BRIDGE_TEST_DYNAMODB_STREAMS="$STREAMS_DIR"
export DINGTALK_INTEROP_PYTHON="$ROOT/.venv/bin/python"
# moto's server, a Secrets Manager the secrets tests start on a free port of their own.
export BRIDGE_TEST_MOTO="$ROOT/.venv/bin/moto_server"
export SAM_CLI_TELEMETRY=0

FAILED=()
check() {
  local name="$1"
  shift
  log "$name: $*"
  if "$@"; then
    log "$name: ok"
  else
    log "$name: FAILED"
    FAILED+=("$name")
  fi
}

# Only the offline AWS settings the linters want; the tests bring their own.
aws_offline() {
  AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true "$@"
}

check fmt cargo fmt --all -- --check
check clippy cargo clippy --workspace --all-targets -- -D warnings
# The function binaries are built first so the local router test starts them without compiling.
check build cargo build --workspace --bins
check test cargo test --workspace --no-fail-fast
# schemathesis on the ops routes of openapi.yaml against a stack started by `make dev`'s script
# (bearer, no server errors, schema conformance); bounded: ~35-50 s on an idle machine, at most
# 120 s to start and 90 s to run.
check api-conformance bash infra/scripts/api_conformance.sh
check rules cargo run -q -p bridge-cli -- validate-rules infra/rules.sample.json
check cfn-lint aws_offline .venv/bin/cfn-lint template.yaml
check sam-validate aws_offline .venv/bin/sam validate --lint --template template.yaml --region us-east-1

if ((${#FAILED[@]})); then
  log "make test: failed checks: ${FAILED[*]}"
  exit 1
fi
log "make test: all checks passed"
