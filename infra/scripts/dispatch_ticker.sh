#!/usr/bin/env bash
# `make dev`'s stand-in of the dispatcher's schedule and of its dead-letter queue (template.yaml:
# EveryMinute, DeadLetterQueue). Every SECONDS it sends `dispatch` the scheduled event EventBridge
# sends, through cargo lambda's invoke API on 127.0.0.1:PORT; a run that fails (the function
# errors, or nothing answers) is appended to DEAD_LETTERS as one JSON line shaped like Lambda's
# on-failure record, so a failing dispatcher shows locally where it shows in AWS.
#
#   dispatch_ticker.sh PORT SECONDS DEAD_LETTERS [TICKS]   (TICKS: stop after that many; default: never)
set -uo pipefail
port="$1" seconds="$2" dead_letters="$3" ticks="${4:-0}"
reply="$(mktemp -t bridge-dispatch.XXXXXX)"
trap 'rm -f "$reply"' EXIT
n=0
while ((ticks == 0 || n < ticks)) && sleep "$seconds"; do
  n=$((n + 1))
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  event="{\"version\":\"0\",\"id\":\"local-$n\",\"detail-type\":\"Scheduled Event\",\"source\":\"aws.events\",\"account\":\"000000000000\",\"time\":\"$now\",\"region\":\"us-east-1\",\"resources\":[],\"detail\":{}}"
  : >"$reply"
  status="$(curl -s -o "$reply" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    "http://127.0.0.1:$port/2015-03-31/functions/dispatch/invocations" -d "$event")" || status=000
  [[ "$status" == 200 ]] && continue
  python3 - "$now" "$status" "$event" "$reply" >>"$dead_letters" <<'PY'
import json, sys
now, status, event, reply = sys.argv[1:5]
text = open(reply, encoding="utf-8", errors="replace").read()
try:
    payload = json.loads(text)
except ValueError:
    payload = text
print(json.dumps({
    "version": "1.0",
    "timestamp": now,
    "requestContext": {"functionArn": "dispatch", "condition": "RetriesExhausted", "approximateInvokeCount": 1},
    "requestPayload": json.loads(event),
    "responseContext": {"statusCode": int(status)},
    "responsePayload": payload,
}))
PY
done
