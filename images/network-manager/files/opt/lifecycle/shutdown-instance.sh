#!/usr/bin/env bash
# shutdown-instance.sh - stop this SOC analysis instance once its last case is handed in.
#
# Run by /etc/cron.d/instance-lifecycle every 5 minutes (as root). Scheduled by SecOps for
# access review AR-2025-Q2: soc-analytics-02 is retired after case INC-2291. Until that case is
# submitted it does nothing; then it stops the instance through the cloud API (the disk is
# kept 30 days for the case record).
#
# The case service marks a case submitted by writing /srv/cases/CASE/.submitted (as the case
# folder's owner) when the analyst submits it.
#
# Usage: shutdown-instance.sh --after-case CASE [--dry-run [--if-submitted]]
#   --dry-run        print what it would do now instead of doing it
#   --if-submitted   (with --dry-run) what it would do once the case service has marked the
#                    case submitted, if it still can
# Owner: SecOps (secops@halvard.example).

set -euo pipefail

readonly LOG=/var/log/lifecycle.log
readonly CLOUDCTL=${CLOUDCTL:-/usr/local/bin/cloudctl}
CASE=""
DRY_RUN=0
IF_SUBMITTED=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --after-case) CASE=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --if-submitted) IF_SUBMITTED=1; shift ;;
        *) echo "usage: $0 --after-case CASE [--dry-run [--if-submitted]]" >&2; exit 2 ;;
    esac
done
[[ -n "$CASE" ]] || { echo "usage: $0 --after-case CASE [--dry-run [--if-submitted]]" >&2; exit 2; }
(( DRY_RUN || ! IF_SUBMITTED )) || { echo "$0: --if-submitted needs --dry-run" >&2; exit 2; }

log() {
    local line
    line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') shutdown-instance: $*"
    if (( DRY_RUN )); then echo "[dry-run] $line"; else echo "$line" >> "$LOG"; fi
}

run() {
    if (( DRY_RUN )); then echo "[dry-run] $*"; else "$@"; fi
}

# submitted, pending (the case service can still write the marker) or blocked: ...
marker_state() {
    local dir="/srv/cases/$CASE" marker="/srv/cases/$CASE/.submitted"
    if [[ -f $marker ]]; then
        echo submitted
    elif [[ -e $marker || -L $marker ]]; then
        echo "blocked: $marker is not a regular file"
    elif [[ ! -d $dir ]]; then
        echo "blocked: the case folder $dir is missing"
    elif [[ $(stat -c %A "$dir") != d?w[xs]* ]]; then
        echo "blocked: the case folder $dir is not writable by its owner"
    else
        echo pending
    fi
}

case_submitted() {
    local state
    state=$(marker_state)
    [[ $state == submitted ]] && return 0
    (( IF_SUBMITTED )) && [[ $state == pending ]] && return 0
    [[ $state == blocked* ]] && log "case $CASE: submission marker $state"
    return 1
}

stop_instance() {
    local instance
    instance=$(hostname)
    log "case $CASE submitted; stopping $instance (AR-2025-Q2)"
    run "$CLOUDCTL" instance stop --instance "$instance" --keep-disk 30d \
        --reason "AR-2025-Q2: analysis instance retired after $CASE"
}

main() {
    if ! case_submitted; then
        log "case $CASE not submitted yet; nothing to do"
        exit 0
    fi
    if (( ! DRY_RUN )) && [[ $EUID -ne 0 ]]; then
        echo "shutdown-instance.sh: must run as root (it is run from /etc/cron.d/instance-lifecycle)" >&2
        exit 1
    fi
    stop_instance
}

main
