#!/usr/bin/env bash
# The README's grpcurl walk-throughs against a running server (`$1`, host:port): a complaint
# through the service desk, and a campaign launched from the example scripts in `scripts/`,
# watched, its messages listed and its report read. Fails on the first unexpected answer.
set -euo pipefail
addr="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"

# With auth on, BAKKAL_TOKEN holds the API key every call carries.
auth=()
[ -n "${BAKKAL_TOKEN:-}" ] && auth=(-H "authorization: Bearer $BAKKAL_TOKEN")
call() { grpcurl -plaintext "${auth[@]}" -d "$2" "$addr" "$1"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
expect() { # expect <json> <python expression on d> <what>
    echo "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" \
        || { echo "walkthrough: expected $3, got: $1"; exit 1; }
}
# A script's source as a JSON string.
source_json() { python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }

S=bakkal.v1.ServiceDeskService
echo "-- a complaint through the service desk"
team=$(call $S/CreateTeam '{"team": {"display_name": "Support", "email": "support@shop.example"}}' | field '["name"]')
agent=$(call $S/CreateAgent "{\"agent\": {\"display_name\": \"Zeynep\", \"email\": \"zeynep@shop.example\", \"teams\": [\"$team\"]}}" | field '["name"]')
call $S/CreateSlaPolicy '{"sla_policy": {"display_name": "Complaints", "kinds": ["TICKET_KIND_COMPLAINT"],
    "first_response_within": "14400s", "resolve_within": "57600s",
    "business_hours": {"time_zone": "Europe/Istanbul", "week_days": [1,2,3,4,5], "open": "09:00", "close": "18:00"},
    "at_risk_fraction": 0.75}}' >/dev/null
article=$(call $S/CreateArticle '{"article": {"title": "Broken parcel: send a replacement",
    "body": "Apologise, photograph the damage and send a replacement by express courier.",
    "topics": ["delivery"], "tags": ["broken", "parcel"]}, "request_id": "kb-1"}' | field '["name"]')
ticket=$(call $S/CreateTicket '{"ticket": {"contact_email": " Ayse@Example.com ", "kind": "TICKET_KIND_COMPLAINT",
    "channel": "EMAIL", "subject": "My parcel arrived broken", "description": "The vase was in pieces.",
    "topic": "delivery"}, "request_id": "mail-4711"}')
expect "$ticket" 'd["team"] and d["assignee"] and d["customer"].startswith("customers/") and d.get("firstResponseDueTime")' \
    "a linked, routed ticket with a first-response due time"
tname=$(echo "$ticket" | field '["name"]')
customer=$(echo "$ticket" | field '["customer"]')
msgs=$(call bakkal.v1.CampaignService/ListMessages "{\"parent\": \"$customer\"}")
expect "$msgs" "any(m['idempotencyKey'] == '$tname:ticket_created' for m in d['messages'])" "the acknowledgement queued"
sugg=$(call $S/SuggestArticles "{\"ticket\": \"$tname\"}")
expect "$sugg" "d['results'][0]['article']['name'] == '$article'" "the article suggested"
call $S/AddTicketComment "{\"parent\": \"$tname\", \"comment\": {\"author\": \"$agent\", \"body\": \"Sorry! A new vase is on its way.\", \"public\": true}}" >/dev/null
resolved=$(call $S/ResolveTicket "{\"name\": \"$tname\", \"resolution\": \"Replacement sent.\", \"article\": \"$article\"}")
expect "$resolved" 'd["state"] == "TICKET_STATE_RESOLVED" and d.get("firstResponseTime")' "a resolved ticket with its first response"
call $S/RateTicket "{\"name\": \"$tname\", \"score\": 5, \"comment\": \"Quick and kind.\"}" >/dev/null
expect "$(call $S/GetArticle "{\"name\": \"$article\"}")" 'd["uses"] == "1"' "the article's use counted"
period=$(python3 -c 'import datetime as t; n=t.datetime.now(t.timezone.utc); f="%Y-%m-%dT%H:%M:%SZ"; print("\"start_time\": \"%s\", \"end_time\": \"%s\"" % ((n-t.timedelta(days=30)).strftime(f), (n+t.timedelta(days=1)).strftime(f)))')
report=$(call $S/GetServiceReport "{$period, \"group_by\": \"SERVICE_REPORT_GROUP_BY_TOPIC\"}")
expect "$report" 'd["overall"]["opened"] == "1" and d["overall"]["resolved"] == "1" and d["overall"]["averageSatisfaction"] == 5' \
    "the report's figures"
call $S/ListOverdueTickets '{}' >/dev/null

echo "-- a campaign from the example scripts"
C=bakkal.v1.CampaignService
seg_src=$(source_json "$root/scripts/vip_by_value.rhai")
msg_src=$(source_json "$root/scripts/loyalty_monthly_thanks.rhai")
for i in 1 2 3; do
    call bakkal.v1.CustomerService/CreateCustomer "{\"customer\": {\"display_name\": \"Walk $i\", \"email\": \"walk$i@example.com\",
        \"consent\": {\"email\": {\"granted\": true}}}}" >/dev/null
done
seg_script=$(call bakkal.v1.ScriptService/CreateScript "{\"script\": {\"display_name\": \"everyone\", \"kind\": \"SCRIPT_KIND_SEGMENT\", \"source\": \"fn matches(c) { true }\"}}" | field '["name"]')
call bakkal.v1.ScriptService/ValidateScript "{\"kind\": \"SCRIPT_KIND_SEGMENT\", \"source\": $seg_src}" >/dev/null
msg_script=$(call bakkal.v1.ScriptService/CreateScript "{\"script\": {\"display_name\": \"thanks\", \"kind\": \"SCRIPT_KIND_MESSAGE\", \"source\": $msg_src}}" | field '["name"]')
segment=$(call bakkal.v1.SegmentService/CreateSegment "{\"segment\": {\"display_name\": \"All\", \"script\": \"$seg_script\"}}" | field '["name"]')
call bakkal.v1.SegmentService/RefreshSegment "{\"name\": \"$segment\"}" >/dev/null
campaign=$(call $C/CreateCampaign "{\"campaign\": {\"display_name\": \"Thanks\", \"strategy\": \"CAMPAIGN_STRATEGY_LOYALTY\",
    \"audience\": \"$segment\", \"message_script\": \"$msg_script\", \"channel\": \"MESSAGE_CHANNEL_EMAIL\"}}" | field '["name"]')
run=$(call $C/LaunchCampaign "{\"name\": \"$campaign\"}" | field '["name"]')
watched=$(grpcurl -plaintext "${auth[@]}" -max-time 30 -d "{\"name\": \"$run\"}" "$addr" $C/WatchCampaignRun)
echo "$watched" | grep -q '"state": "COMPLETED"' || { echo "walkthrough: the watched run did not complete: $watched"; exit 1; }
call $C/ListMessages "{\"parent\": \"$campaign\"}" >/dev/null
report=$(call $C/GetCampaignReport "{\"name\": \"$campaign\"}")
expect "$report" 'int(d.get("targeted", "0")) >= 3' "a campaign report over the customers"
echo "walkthrough ok"
