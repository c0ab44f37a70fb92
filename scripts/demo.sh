#!/usr/bin/env bash
# The whole story in five minutes, against localstripe (a Stripe-compatible peer) on
# this machine: save credentials, push a location, pre-authorize, pay with a test card,
# authorize, start, complete for less, refund part, read the audit and the payment
# health. Starts everything it needs on free ports and stops it all at the end.
#
#   make demo                    # builds roampay, installs localstripe into .venv
#   ROAMPAY_BIN=… LOCALSTRIPE_PYTHON=… scripts/demo.sh   # what make demo runs
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROAMPAY_BIN:-$here/target/debug/roampay}
python=${LOCALSTRIPE_PYTHON:-$here/.venv/bin/python}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
show() { jq -c "$@"; }
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WS=ws-demo
PK=pk_test_51HxDemoPublishableKey
SK=sk_test_51HxDemoSecretKeyForLocalstripe
WH=whsec_DemoEndpointSigningSecret
export ROAMPAY_JWT_SECRET
ROAMPAY_JWT_SECRET=$("$python" -c 'import secrets; print(secrets.token_urlsafe(48))')

step "Start localstripe and roampay (SQLite in a temporary directory)"
ls_port=$(free_port)
"$python" "$here/tests/localstripe/roampay_localstripe.py" --port "$ls_port" --from-scratch >"$work/localstripe.log" 2>&1 &
pids+=($!)
STRIPE="http://127.0.0.1:$ls_port"
for _ in $(seq 1 50); do curl -fs -u "$SK:" "$STRIPE/v1/payment_intents?limit=1" >/dev/null && break; sleep 0.2; done
ROAMPAY_DATA_DIR="$work/data" ROAMPAY_BIND=127.0.0.1:0 STRIPE_API_BASE="$STRIPE" \
  ROAMPAY_SWEEP_INTERVAL_SECS=1 ROAMPAY_SWEEP_FIRST_LOOK_SECS=0 RUST_LOG=warn \
  "$bin" serve >"$work/roampay.out" 2>"$work/roampay.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "roampay listening on" "$work/roampay.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^roampay listening on \(http:[^ ]*\).*/\1/p' "$work/roampay.out")
[ -n "$URL" ] || { cat "$work/roampay.log"; exit 1; }
echo "localstripe on $STRIPE, roampay on $URL"

token() { "$bin" token --sub "$1" --workspace "$WS" --scope "$2"; }
ADMIN=$(token alice@example.com "roaming:read roaming:write locations:write")
CPO=$(token ocpi-sessions "sessions:write")
SUPPORT=$(token support@example.com "audit:read refunds:write")
api() { local method=$1 path=$2 auth=$3; shift 3; curl -fsS -X "$method" "$URL$path" -H "Authorization: Bearer $auth" -H 'Content-Type: application/json' "$@"; }

step "Register the workspace's webhook endpoint in (local)stripe"
curl -fsS "$STRIPE/_config/webhooks/roampay" -d "url=$URL/ocpi/stripe/webhook/$WS" -d "secret=$WH" >/dev/null
echo "$URL/ocpi/stripe/webhook/$WS"

step "Save the workspace's Stripe credentials (validated with Stripe before answering)"
api PATCH "/api/permissions/workspace/$WS/ocpi-config" "$ADMIN" \
  -d "{\"allow_guest_access\": true, \"pre_auth_cents\": 5000, \"stripe\": {\"publishable_key\": \"$PK\", \"secret_key\": \"$SK\", \"webhook_signing_secret\": \"$WH\"}}" \
  | show '{health: .stripe.health.status, secret_key: .stripe.secret_key, credential_version: .stripe.credential_version}'

step "Push a location with a paid connector"
api PUT "/api/workspaces/$WS/locations/LOC-DEMO" "$ADMIN" -d '{
  "name": "Depot A", "address": "1 Main St", "city": "Sydney", "postal_code": "2000", "country": "AUS",
  "coordinates": {"latitude": "-33.868800", "longitude": "151.209300"},
  "evses": [{"uid": "EVSE-1", "evse_id": "AU*BFL*E1", "connectors": [
    {"id": "1", "standard": "IEC_62196_T2_COMBO", "format": "CABLE", "power_type": "DC",
     "tariff": {"currency": "aud", "price_per_kwh_cents": 45, "flat_fee_cents": 0}}]}]}' >/dev/null
curl -fsS "$URL/emsp/2.2.1/locations/LOC-DEMO?show_ocpi_cfg=true" | show '.data.ocpi_cfg | {payment_ready, pre_auth_cents, stripe_publishable_key}'

step "A driver pre-authorizes (Roaming Web: POST /ocpi/create-payment-intent)"
created=$(curl -fsS "$URL/ocpi/create-payment-intent" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $("$python" -c 'import uuid; print(uuid.uuid4())')" \
  -d '{"location_id": "LOC-DEMO", "evse_uid": "EVSE-1", "connector_id": "1", "email": "driver@example.com"}')
echo "$created" | show '{charging_intent_id, status, payment_intent_id, amount_cents}'
ID=$(echo "$created" | jq -r .charging_intent_id)
PI=$(echo "$created" | jq -r .payment_intent_id)

step "The driver pays with Stripe's test card 4242 4242 4242 4242 (what Stripe.js does)"
PM=$(curl -fsS -u "$SK:" "$STRIPE/v1/payment_methods" -d type=card -d 'card[number]=4242424242424242' \
  -d 'card[exp_month]=12' -d 'card[exp_year]=2030' -d 'card[cvc]=123' | jq -r .id)
curl -fsS -u "$SK:" "$STRIPE/v1/payment_intents/$PI" -d "payment_method=$PM" >/dev/null
curl -fsS -u "$SK:" -X POST "$STRIPE/v1/payment_intents/$PI/confirm" | show '{payment_intent: .id, status}'

step "Roaming Web confirms (the webhook from Stripe does the same)"
curl -fsS -X POST "$URL/ocpi/charging-intents/$ID/confirm" -H 'Content-Type: application/json' -d '{}' \
  | show '{status, authorized_amount_cents, capture_before}'

step "The OCPI session starts, then completes at 32.10 AUD (less than the 50.00 hold)"
api POST "/ocpi/charging-intents/$ID/start" "$CPO" -d '{"ocpi_session_id": "SESS-DEMO-1"}' | show '{status, ocpi_session_id}'
api POST "/ocpi/charging-intents/$ID/complete" "$CPO" -d '{"final_amount_cents": 3210}' \
  | show '{status, captured_amount_cents, final_amount_cents}'

step "Support refunds 5.00 AUD of it"
api POST "/api/support/charging-intents/$ID/refunds" "$SUPPORT" \
  -H "Idempotency-Key: $("$python" -c 'import uuid; print(uuid.uuid4())')" \
  -d '{"amount_cents": 500, "reason": "requested_by_customer"}' | show '{status, amount_cents, refund_id}'

step "The audit trail of the workspace (newest first)"
for _ in $(seq 1 50); do
  audit=$(api GET "/api/support/audit?workspace_id=$WS&limit=50" "$SUPPORT")
  echo "$audit" | jq -e '[.data[].event_type] | index("RefundSucceeded")' >/dev/null && break
  sleep 0.2
done
echo "$audit" | jq -r '.data[] | "\(.recorded_at[11:19])  \(.event_type)  \(.summary)"'

step "Payment health of the workspace"
api GET "/api/support/workspaces/$WS/payment-health" "$SUPPORT" \
  | show '{credential_health: .credential_health.status, intents_by_status, webhooks_rejected_24h}'

step "Done: everything started is stopped again"
