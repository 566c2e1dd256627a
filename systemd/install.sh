#!/usr/bin/env bash
# Install the tricho-station systemd service on Raspberry Pi OS (Bookworm). Idempotent: run it
# again after an upgrade; it never overwrites /etc/tricho/station.toml.
#
#   sudo systemd/install.sh              # user, unit, example config, daemon-reload, enable --now
#   systemd/install.sh --dry-run         # print what it would do, change nothing (no root needed)
#   sudo systemd/install.sh --no-start   # everything but starting the service
#   sudo systemd/install.sh --venv /srv/tricho/venv   # venv elsewhere than /opt/tricho/venv
#
# The venv must exist first (docs/raspberry-pi.md):
#   python3 -m venv --system-site-packages /opt/tricho/venv
#   /opt/tricho/venv/bin/pip install -c constraints/bookworm.txt /opt/tricho/src
set -euo pipefail

SERVICE=tricho-station
USER_NAME=tricho
GROUPS_WANTED=(video gpio)
DEFAULT_VENV=/opt/tricho/venv
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
UNIT_SRC="$HERE/$SERVICE.service"
CONFIG_SRC="$REPO/station/example.toml"
UNIT_DIR=/etc/systemd/system
CONFIG_DIR=/etc/tricho
CONFIG="$CONFIG_DIR/station.toml"

dry_run=0
start=1
venv="$DEFAULT_VENV"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run|-n) dry_run=1 ;;
        --no-start) start=0 ;;
        --venv) venv="${2:?--venv needs a directory}"; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

run() {
    # Print the command; run it unless --dry-run.
    printf '+ %s\n' "$*"
    if [ "$dry_run" -eq 0 ]; then "$@"; fi
}
note() { printf '# %s\n' "$*"; }

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or with --dry-run to see what it would do" >&2
    exit 1
fi
[ -f "$UNIT_SRC" ] || { echo "install.sh: $UNIT_SRC missing" >&2; exit 1; }
[ -f "$CONFIG_SRC" ] || { echo "install.sh: $CONFIG_SRC missing" >&2; exit 1; }
if [ ! -x "$venv/bin/tricho" ]; then
    note "warning: $venv/bin/tricho does not exist yet; create the venv first (docs/raspberry-pi.md), the service cannot start without it"
fi

# 1. Groups and the service user (no login, no home of its own: state lives in /var/lib/tricho).
for g in "${GROUPS_WANTED[@]}"; do
    if getent group "$g" >/dev/null; then
        note "group $g exists"
    else
        run groupadd --system "$g"
    fi
done
if id -u "$USER_NAME" >/dev/null 2>&1; then
    note "user $USER_NAME exists"
else
    run useradd --system --user-group --no-create-home --home-dir /var/lib/tricho \
        --shell /usr/sbin/nologin --comment "tricho capture station" "$USER_NAME"
fi
groups_csv="$(IFS=,; echo "${GROUPS_WANTED[*]}")"
run usermod --append --groups "$groups_csv" "$USER_NAME"

# 2. The unit (replaced on every run, so upgrades bring the new one).
run install -m 0644 "$UNIT_SRC" "$UNIT_DIR/$SERVICE.service"
dropin_dir="$UNIT_DIR/$SERVICE.service.d"
if [ "$venv" != "$DEFAULT_VENV" ]; then
    note "venv $venv: ExecStart overridden in $dropin_dir/venv.conf"
    run install -d -m 0755 "$dropin_dir"
    if [ "$dry_run" -eq 0 ]; then
        printf '[Service]\nExecStart=\nExecStart=%s/bin/tricho station --config %s\n' "$venv" "$CONFIG" \
            > "$dropin_dir/venv.conf"
    fi
elif [ -e "$dropin_dir/venv.conf" ]; then
    run rm -f "$dropin_dir/venv.conf"
fi

# 3. The config: an annotated example on the first install, never overwritten.
run install -d -m 0750 -o root -g "$USER_NAME" "$CONFIG_DIR"
if [ -e "$CONFIG" ]; then
    note "$CONFIG exists: kept (compare with $CONFIG_SRC after upgrades)"
else
    run install -m 0640 -o root -g "$USER_NAME" "$CONFIG_SRC" "$CONFIG"
    note "edit $CONFIG: [camera] exposure, gains, lens_position; [lighting]; [mqtt] broker"
fi

# 4. systemd.
run systemctl daemon-reload
if [ "$start" -eq 1 ]; then
    was_active=0
    if systemctl is-active --quiet "$SERVICE.service" 2>/dev/null; then was_active=1; fi
    run systemctl enable --now "$SERVICE.service"
    # A service that was already running keeps its old code until restarted (enable --now
    # does not restart it).
    if [ "$was_active" -eq 1 ]; then
        run systemctl restart "$SERVICE.service"
    fi
    note "check: systemctl status $SERVICE; journalctl -u $SERVICE -f"
else
    run systemctl enable "$SERVICE.service"
fi
