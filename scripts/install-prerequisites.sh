#!/usr/bin/env bash
# Installs the system prerequisites of scripts/prerequisites.txt: every Debian package there whose
# tool is missing, in one apt-get call. Tools the machine comes with (`preinstalled`) and optional
# ones are only reported. Safe to re-run: with nothing missing it installs nothing.
#
# Packages that start a system service on install (redis-server, containerd) have it stopped and
# disabled: the tests and the node start their own instances, on their own ports and sockets.
#
#   scripts/install-prerequisites.sh           install what is missing
#   scripts/install-prerequisites.sh --check   install nothing; exit 1 when something is missing
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIST=$SCRIPT_DIR/prerequisites.txt
LOG_TAG=prerequisites
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

CHECK_ONLY=0
case ${1:-} in
--check) CHECK_ONLY=1 ;;
"") ;;
*)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

present() {
    if [[ $1 == /* ]]; then
        compgen -G "$1" >/dev/null
    else
        command -v "$1" >/dev/null 2>&1
    fi
}

# missing_entries: "tool provider" for each missing, non-optional entry of the list.
missing_entries() {
    local tool provider needed_by
    while read -r tool provider needed_by; do
        [[ -z $tool || $tool == \#* || $needed_by == optional ]] && continue
        present "$tool" || printf '%s %s\n' "$tool" "$provider"
    done <"$LIST"
}

# stop_system_service NAME: stops and disables a service a package started (systemd or SysV).
stop_system_service() {
    local name=$1
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now "$name" >/dev/null 2>&1 || true
    else
        [[ -x /etc/init.d/$name ]] && { as_root "/etc/init.d/$name" stop >/dev/null 2>&1 || true; }
        command -v update-rc.d >/dev/null 2>&1 && { as_root update-rc.d "$name" disable >/dev/null 2>&1 || true; }
        command -v systemctl >/dev/null 2>&1 && { as_root systemctl disable "$name" >/dev/null 2>&1 || true; }
    fi
    log "  stopped and disabled the system $name service (the tests start their own)"
}

T0=$(now)
mapfile -t MISSING < <(missing_entries)
packages=()
for entry in "${MISSING[@]}"; do
    [[ ${entry#* } == preinstalled ]] || packages+=("${entry#* }")
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sed '/^$/d' | sort -u)

if ((${#packages[@]})); then
    [[ $CHECK_ONLY == 1 ]] && { printf '%s\n' "${MISSING[@]}" | sed 's/^/missing: /'; exit 1; }
    log "installing with apt-get: ${packages[*]}"
    apt_install "${packages[@]}"
    for service in redis-server containerd; do
        [[ " ${packages[*]} " == *" $service "* ]] && stop_system_service "$service"
    done
    mapfile -t MISSING < <(missing_entries)
fi

status=0
for entry in "${MISSING[@]}"; do
    tool=${entry%% *} provider=${entry#* }
    if [[ $provider == preinstalled ]]; then
        log "WARNING: $tool is not on PATH; this machine should come with it (install it by hand)"
    else
        log "ERROR: $tool is still missing after apt-get install $provider"
        status=1
    fi
done
((status == 0)) || exit 1
log "every listed package is installed ($(elapsed "$T0"))"
