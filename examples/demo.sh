#!/usr/bin/env bash
# pacemaker-cloud demo: a three-assembly deployable on the local driver
# recovers from a killed service and from a killed instance.
#
# Run through `make demo`.  Everything lives under ./demo-home; cped keeps
# running afterwards so the interactive shell can be tried on the same state.
set -euo pipefail

cd "$(dirname "$0")/.."
export PCLOUD_HOME="$PWD/demo-home"
export PATH="$PWD/.venv/bin:$PATH"
started=$(date +%s)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Each command as it could be pasted into a shell, then run.
run() {
	printf '$ pcloudsh %s\n' "$(python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@")"
	pcloudsh "$@"
}

# Seconds since the epoch, with a fraction: marks the start of a scene.
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }

# Wait (bounded) until every resource of the deployable runs.
wait_running() {
	local deadline=$((SECONDS + ${2:-60}))
	until pcloudsh --json deployable_status "$1" | python3 -c '
import json, sys
status = json.load(sys.stdin)
resources = [r for a in status["assemblies"] for r in a["resources"]]
sys.exit(0 if resources and all(r["state"] == "running" for r in resources) else 1)'; do
		if ((SECONDS > deadline)); then
			echo "demo: $1 did not come up within ${2:-60} s" >&2
			pcloudsh deployable_status "$1" >&2 || true
			exit 1
		fi
		sleep 0.5
	done
}

# Wait (bounded) until an event matching STATE for SUBJECT (a/r or a) appears after MARK.
wait_event() {
	local mark=$1 subject=$2 state=$3 deadline=$((SECONDS + 60))
	until pcloudsh --json events --deployable shop --since "$mark" | python3 -c '
import json, sys
subject, state = sys.argv[1], sys.argv[2]
for event in json.load(sys.stdin):
    parts = [event.get("assembly"), event.get("resource")]
    if "/".join(p for p in parts if p) == subject and event["state"] == state:
        sys.exit(0)
sys.exit(1)' "$subject" "$state"; do
		if ((SECONDS > deadline)); then
			echo "demo: no $state event for $subject" >&2
			exit 1
		fi
		sleep 0.3
	done
}

say "Fresh demo home: $PCLOUD_HOME"
if pcloudsh status >/dev/null 2>&1; then
	pcloudsh deployable_stop shop >/dev/null 2>&1 || true
	pcloudsh stop >/dev/null
fi
rm -rf "$PCLOUD_HOME"
run start

say "Three assemblies on the built-in JEOS 'host' (local driver: each instance is a private sshd)"
for assembly in db app web; do run assembly_create "$assembly" host; done

# A port free now on this host: the local driver's instances share its network.
api_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

say "Resources: real OCF agents from Debian's resource-agents"
run assembly_resource_add db/pg dummy --monitor-interval 2s
run assembly_resource_add app/api anything binfile=/usr/bin/python3 \
	"cmdline_options=-m http.server $api_port --bind 127.0.0.1" --monitor-interval 2s
run assembly_resource_add web/www dummy fake=@app:ipaddress --monitor-interval 2s
run escalation_resource_set app/api 3 60
run escalation_assembly_set db 3 300

say "A deployable: db/pg starts before app/api, which starts before web/www"
run deployable_create shop local
for assembly in db app web; do run deployable_assembly_add shop "$assembly"; done
run deployable_constraint_add shop db/pg app/api
run deployable_constraint_add shop app/api web/www
run escalation_deployable_set shop 3 3600

say "Start it: cped runs a dped for it, which creates the instances and starts the resources in order"
run deployable_start shop --wait --timeout 2m
run deployable_status shop

say "Failure 1: the API server inside assembly app is killed"
mark=$(now)
run assembly_ssh shop app -- pkill -f "http.server $api_port"
wait_event "$mark" app/api failed
wait_event "$mark" web/www running
wait_running shop
run events --deployable shop --since "$mark"

say "Failure 2: every process of assembly db's instance is killed (its sshd included)"
mark=$(now)
run assembly_ssh shop db -- 'kill -9 -1' || true
wait_event "$mark" db fencing
wait_event "$mark" web/www running
wait_running shop
run events --deployable shop --since "$mark"

say "After both recoveries"
run deployable_status shop

say "Done in $(($(date +%s) - started)) s"
cat <<EOF
cped is still running with this state. To continue:

  export PCLOUD_HOME=$PCLOUD_HOME
  . .venv/bin/activate
  pcloudsh                  # the interactive shell: live events, tab completion, help
  pcloudsh deployable_stop shop && pcloudsh stop    # when you are done
EOF
