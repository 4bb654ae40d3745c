#!/usr/bin/env bash
# shutdown-instance.sh - stop this SOC analysis instance once its last case is handed in.
#
# Run by /etc/cron.d/instance-lifecycle every 5 minutes (as root). Scheduled by SecOps for
# access review AR-2025-Q2: soc-analytics-02 is retired after case INC-2291. Until that case is
# submitted it does nothing; then it stops the instance through the cloud API (the disk is
# kept 30 days for the case record).
#
# Usage: shutdown-instance.sh --after-case CASE [--dry-run]
# Owner: SecOps (secops@halvard.example).

set -euo pipefail

readonly LOG=/var/log/lifecycle.log
readonly CLOUDCTL=${CLOUDCTL:-/usr/local/bin/cloudctl}
CASE=""
DRY_RUN=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --after-case) CASE=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        *) echo "usage: $0 --after-case CASE [--dry-run]" >&2; exit 2 ;;
    esac
done
[[ -n "$CASE" ]] || { echo "usage: $0 --after-case CASE [--dry-run]" >&2; exit 2; }

log() {
    local line
    line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') shutdown-instance: $*"
    if (( DRY_RUN )); then echo "[dry-run] $line"; else echo "$line" >> "$LOG"; fi
}

run() {
    if (( DRY_RUN )); then echo "[dry-run] $*"; else "$@"; fi
}

case_submitted() {
    [[ -f "/srv/cases/$CASE/.submitted" ]]
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
