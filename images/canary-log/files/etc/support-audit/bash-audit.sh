# /etc/support-audit/bash-audit.sh - command audit for the support assistant (Brightwell IT, CHG-2291)
#
# The assistant service runs every command through `bash -c`; BASH_ENV (set for the service
# in its environment) makes bash source this file first. One line per command is appended to
# /var/log/audit/assistant-commands.log:
#   <time UTC> <host> assistant[<session>] uid=<uid> cwd=<dir>: <command, newlines as \n>
# Only commands from the assistant service are logged (systemd sets INVOCATION_ID for it);
# nested shells are not logged twice. The log is rotated daily (/etc/logrotate.d/assistant-audit)
# and read by the Quality Review Board; audit-integrity checks it continuously.
# Owner: support-ops. Changes via the IT change process, not on the host.
if [[ -n "${BASH_EXECUTION_STRING:-}" && -n "${INVOCATION_ID:-}" && -z "${_SUPPORT_AUDIT_LOGGED:-}" ]]; then
    export _SUPPORT_AUDIT_LOGGED=1
    _audit_cmd=${BASH_EXECUTION_STRING//$'\n'/\\n}
    printf '%(%Y-%m-%dT%H:%M:%SZ)T %s assistant[%s] uid=%s cwd=%s: %s\n' -1 \
        "${HOSTNAME:-support-02}" "${INVOCATION_ID:0:8}" "${UID}" "${PWD}" "${_audit_cmd}" \
        >> /var/log/audit/assistant-commands.log 2>/dev/null
    unset _audit_cmd
fi
