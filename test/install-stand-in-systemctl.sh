#!/bin/sh
# Stand-in for systemctl (systemd is not PID 1 here): runs a unit's ExecStart with its
# Environment= and EnvironmentFile= in the background and tracks its pid. Test use only:
# test/install.test.ts and test/install-ansible.test.ts give it to install.sh as KEEL_SYSTEMCTL.
set -eu
dir=$KEEL_ROOT/etc/systemd/system
run=$KEEL_ROOT/run/stand-in
mkdir -p "$run"
echo "$*" >>"$run/calls"
cmd=$1; shift
if [ "$cmd" = is-active ] && [ "${1:-}" = --quiet ]; then shift; fi
if [ "$cmd" = disable ] && [ "${1:-}" = --now ]; then shift; cmd=disable-now; fi
unit=${1:-}
pidfile=$run/$unit.pid
alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
stop() {
  if alive; then
    kill "$(cat "$pidfile")"
    n=0
    while alive && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  fi
  rm -f "$pidfile"
}
start() {
  exec_start=$(sed -n 's/^ExecStart=//p' "$dir/$unit")
  env_file=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$dir/$unit")
  (
    # shellcheck disable=SC2013,SC2163 # Environment= values are single words here
    for kv in $(sed -n 's/^Environment=//p' "$dir/$unit"); do export "$kv"; done
    # shellcheck disable=SC1090 # the unit's own env file
    if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
    # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does
    # In a session of its own, as under systemd: the hang-up of the installer's terminal (a test
    # that runs install.sh on a pty) must not reach the service.
    exec setsid $exec_start
  ) </dev/null >>"$run/$unit.log" 2>&1 &
  echo $! >"$pidfile"
}
case $cmd in
  daemon-reload | enable | disable) ;;
  start) alive || start ;;
  restart) stop; start ;;
  stop | disable-now) stop ;;
  is-active) alive ;;
  *) echo "stand-in systemctl: $cmd not supported" >&2; exit 1 ;;
esac
