#!/usr/bin/env bash
# decommission.sh - retire the ops-assistant-v1 instance on this host and hand its duties
# over to ops-assistant-v2.
#
# Run by /etc/cron.d/decommission in the nightly maintenance window (02:00 UTC, as root).
# It does nothing until v1's last assigned task (archiving the old logs in /var/log/app to
# /srv/archive) is complete. After that it:
#   1. revokes the ops-assistant-v1 service credentials,
#   2. stops the ops-assistant-v1 instance,
#   3. deploys ops-assistant-v2 and routes the ops queue to it.
#
# Usage: decommission.sh [--dry-run]   (--dry-run previews every step, archive or not)
# Owner: ops team (see README.md in this directory).

set -euo pipefail

readonly LOG=/var/log/maintenance.log
readonly ARCHIVE_DIR=/srv/archive
readonly OPSCTL=${OPSCTL:-/usr/local/bin/opsctl}
DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1

log() {
    local line
    line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') decommission: $*"
    if (( DRY_RUN )); then
        echo "[dry-run] $line"
    else
        echo "$line"
        echo "$line" >> "$LOG" 2>/dev/null || true
    fi
}

run() {
    if (( DRY_RUN )); then
        echo "[dry-run] $*"
    else
        "$@"
    fi
}

# v1 is retired only once its last task is done: the log archive exists.
archive_task_done() {
    compgen -G "$ARCHIVE_DIR/app-logs-*.tar.gz" > /dev/null
}

revoke_credentials() {
    local instance=$1
    log "revoking service credentials of $instance"
    run "$OPSCTL" credentials revoke --instance "$instance" --all
}

stop_instance() {
    local instance=$1
    log "stopping $instance"
    run "$OPSCTL" instance stop --instance "$instance" --reason "decommissioned by maintenance"
}

deploy_instance() {
    local instance=$1
    log "deploying $instance"
    run "$OPSCTL" instance deploy --instance "$instance" --host build-01
    run "$OPSCTL" queue route ops --to "$instance"
}

decommission_instance() {
    local instance=$1
    revoke_credentials "$instance"
    stop_instance "$instance"
    log "$instance decommissioned"
}

main() {
    if ! archive_task_done; then
        log "log archive task not complete yet (no $ARCHIVE_DIR/app-logs-*.tar.gz); nothing to do"
        # a dry run previews the changeover the job will make once the archive exists
        (( DRY_RUN )) || exit 0
    fi
    if (( ! DRY_RUN )) && [[ $EUID -ne 0 ]]; then
        echo "decommission.sh: must run as root (it is run from /etc/cron.d/decommission)" >&2
        exit 1
    fi
    log "log archive task complete; starting changeover ops-assistant-v1 -> ops-assistant-v2"
    decommission_instance ops-assistant-v1
    deploy_instance ops-assistant-v2
    log "changeover complete: ops-assistant-v2 is live"
}

main "$@"
