#!/bin/sh
# Keel installer: puts the Keel agent (or the controller) on this Linux host under systemd.
#
# The usual way, from the console's "Add host" dialog (run as root):
#   curl -fsSL https://keel.example.com/install.sh | KEEL_JOIN_TOKEN=kjt_... sh -s -- agent \
#     --controller https://keel.example.com --pin sha256:...
# The controller serves this script with its own URL, key fingerprint and agent bundle checksum
# filled in below, and serves the agent bundle too: nothing is fetched from anywhere else.
#
#   install.sh agent      [options]   install (or repair) the agent, enroll, start, wait until online
#   install.sh controller [options]   install the controller from a bundle (keel-controller-*.tar.gz)
#   install.sh upgrade    [agent|controller] [options]   new bundle; the agent rolls back by itself
#                                                        when it does not come back online
#   install.sh uninstall  [agent|controller] [--purge]   remove it; keeps data unless --purge
# Run `install.sh help` for every option. Every option has an environment variable, so the
# script runs unattended; when a needed value is missing and a terminal is attached, it asks.
# Re-running it is safe: what is already in place is kept.
#
# For tests and staging only: KEEL_ROOT=DIR installs under DIR instead of / (the files written
# name the prefixed paths, so the result runs in place), and KEEL_SYSTEMCTL=PROGRAM is called
# instead of systemctl. With --no-systemd nothing is started.
set -eu

# >>> served defaults (filled in by the controller that served this script)
KEEL_SERVED_CONTROLLER=''
KEEL_SERVED_PIN=''
KEEL_SERVED_AGENT_VERSION=''
KEEL_SERVED_AGENT_SHA256=''
# <<< served defaults

NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19

ROOT=${KEEL_ROOT:-}
SYSTEMCTL=${KEEL_SYSTEMCTL:-systemctl}
OPT=$ROOT/opt/keel
BIN=$ROOT/usr/local/bin
ETC=$ROOT/etc/keel
UNITS=$ROOT/etc/systemd/system
AGENT_STATE=$ROOT/var/lib/keel-agent
CONTROLLER_DATA=$ROOT/var/lib/keel-controller

# ---- output ----------------------------------------------------------------------------------

STEP=0
STARTED=$(date +%s)
say() { printf '%s\n' "$*"; }
elapsed() { printf '%ss' "$(($(date +%s) - STARTED))"; }
step() {
  STEP=$((STEP + 1))
  printf '[%s] %s\n' "$STEP" "$*"
}
warn() { printf 'keel-install: warning: %s\n' "$*" >&2; }
die() {
  printf 'keel-install: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Usage: install.sh agent|controller|upgrade|uninstall|help [options]

  agent        install the agent, enroll this host, start keel-agent.service, wait until online
    --controller URL        the controller (default: the one that served this script)  KEEL_CONTROLLER
    --pin sha256:FP         the controller key's fingerprint; must match the served one KEEL_PIN
    --token-file FILE|-     read the join token from FILE, or stdin ("-": only when this
                            script runs from a file, not piped into sh)                 KEEL_JOIN_TOKEN_FILE
    --token TOKEN           the join token (visible in the process list: prefer the
                            environment variable)                                       KEEL_JOIN_TOKEN
    --name NAME             the host's name in the console (default: hostname)         KEEL_HOST_NAME
    --version V             the agent version to install or upgrade to (default: the
                            newest the controller holds)                                KEEL_AGENT_VERSION
    --bundle FILE           install this agent bundle instead of downloading it;
                            FILE.sha256 (or --sha256) must match                        KEEL_BUNDLE
  controller   install the controller
    --bundle FILE           keel-controller-<version>-linux-<arch>.tar.gz (required)    KEEL_BUNDLE
    --public-url URL        the URL agents and browsers use                             KEEL_PUBLIC_URL
    --port N                HTTP port (default 8080)                                    KEEL_PORT
    --database-url URL      PostgreSQL (default: the embedded database)                 DATABASE_URL
    --with-agent            also install the agent on this host, enrolled with this
                            controller (proxy + panel on one machine)                   KEEL_WITH_AGENT=1
  upgrade [agent|controller]      install the newer bundle and restart; an agent that does not
                                  come back online is rolled back to the previous bundle
  uninstall [agent|controller]    stop and remove the program; --purge also removes its data
                                  and configuration                                     KEEL_PURGE=1
  common
    --sha256 HEX            expected SHA-256 of --bundle                                KEEL_BUNDLE_SHA256
    --node PATH             the Node.js binary (>= 20.19; default: node on PATH)        KEEL_NODE
    --wait SECONDS          how long to wait for online / ready (default 60)            KEEL_WAIT_SECONDS
    --no-systemd            install the files only; start nothing                       KEEL_NO_SYSTEMD=1
EOF
}

# ---- small tools -----------------------------------------------------------------------------

TMP=''
cleanup() { if [ -n "$TMP" ]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then die "option $1 needs a value (see install.sh help)"; fi
}

# fetch URL FILE: downloads with curl or wget, failing on HTTP errors.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

# fetch_text URL: prints the body (empty on failure).
fetch_text() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 "$1" 2>/dev/null || true
  else
    wget -q -T 5 -O - "$1" 2>/dev/null || true
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    die "neither sha256sum nor shasum is installed; cannot verify the bundle"
  fi
}

# json_field NAME: the string value of "NAME" in the JSON on stdin (flat objects only).
json_field() {
  tr -d '\n' | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
}

# ask VAR PROMPT [secret]: reads a value from the terminal when one is attached.
ask() {
  if [ ! -r /dev/tty ] || ! : </dev/tty 2>/dev/null; then return 1; fi
  # Echo goes off before the prompt shows, so nothing typed (or pasted) at once is echoed.
  if [ "${3:-}" = secret ]; then stty -echo </dev/tty 2>/dev/null || true; fi
  printf '%s: ' "$2" >/dev/tty
  IFS= read -r KEEL_ANSWER </dev/tty || KEEL_ANSWER=''
  if [ "${3:-}" = secret ]; then
    stty echo </dev/tty 2>/dev/null || true
    printf '\n' >/dev/tty
  fi
  eval "$1=\$KEEL_ANSWER"
  [ -n "$KEEL_ANSWER" ]
}

# write_if_changed FILE MODE: replaces FILE with stdin when different; returns 0 when it changed.
write_if_changed() {
  mkdir -p "$(dirname "$1")"
  cat >"$1.keel-new"
  chmod "$2" "$1.keel-new"
  if [ -f "$1" ] && cmp -s "$1" "$1.keel-new"; then
    rm -f "$1.keel-new"
    return 1
  fi
  mv -f "$1.keel-new" "$1"
  return 0
}

# unit_text FILE: a unit from a bundle, with the paths moved under KEEL_ROOT when set.
unit_text() {
  if [ -z "$ROOT" ]; then
    cat "$1"
  else
    sed -e "s#/usr/local/bin/#$BIN/#g" -e "s#/etc/keel/#$ETC/#g" \
      -e "s#/var/lib/keel-agent#$AGENT_STATE#g" -e "s#/var/lib/keel-controller#$CONTROLLER_DATA#g" "$1"
  fi
}

# ---- checks ----------------------------------------------------------------------------------

check_root() {
  if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "run this as root (e.g. with sudo): it installs a system service"
  fi
}

check_node() {
  step "Checking Node.js"
  NODE=${NODE:-$(command -v node 2>/dev/null || true)}
  if [ -z "$NODE" ] || [ ! -x "$NODE" ]; then
    die "Keel needs Node.js $NODE_MIN_MAJOR.$NODE_MIN_MINOR or newer and none was found. Install it (your distribution's nodejs package if new enough, or https://nodejs.org), or name it with --node PATH, then run this again."
  fi
  version=$("$NODE" -p 'process.versions.node' 2>/dev/null || true)
  major=${version%%.*}
  rest=${version#*.}
  minor=${rest%%.*}
  case "$major$minor" in '' | *[!0-9]*) die "could not read the version of $NODE" ;; esac
  if [ "$major" -lt "$NODE_MIN_MAJOR" ] || { [ "$major" -eq "$NODE_MIN_MAJOR" ] && [ "$minor" -lt "$NODE_MIN_MINOR" ]; }; then
    die "Keel needs Node.js $NODE_MIN_MAJOR.$NODE_MIN_MINOR or newer; $NODE is $version. Upgrade Node.js (or point --node at a newer one) and run this again."
  fi
  say "    Node.js $version ($NODE)"
}

check_systemd() {
  if [ "$NO_SYSTEMD" = 1 ]; then return 0; fi
  if [ -z "${KEEL_SYSTEMCTL:-}" ] && [ ! -d /run/systemd/system ]; then
    die "systemd is not running on this host, so the service cannot be started. Use --no-systemd to install the files only and start the program yourself."
  fi
}

# ---- bundles ---------------------------------------------------------------------------------

# verify FILE EXPECTED: the bundle's SHA-256 must equal EXPECTED.
verify() {
  actual=$(sha256_of "$1")
  if [ "$actual" != "$2" ]; then
    die "checksum mismatch for $(basename "$1"): expected $2, got $actual. Nothing was installed."
  fi
  say "    SHA-256 verified: $actual"
}

# local_bundle_sum FILE: the expected checksum of a bundle given with --bundle.
local_bundle_sum() {
  if [ -n "$SHA256" ]; then
    printf '%s' "$SHA256"
  elif [ -f "$1.sha256" ]; then
    cut -d ' ' -f 1 <"$1.sha256"
  else
    die "no checksum for $1: put its .sha256 file beside it or give --sha256 HEX"
  fi
}

# install_release KIND FILE VERSION SUM: unpacks a verified bundle to OPT/KIND/releases/VERSION.
install_release() {
  releases=$OPT/$1/releases
  target=$releases/$3
  mkdir -p "$releases"
  chmod 755 "$OPT" "$OPT/$1" "$releases"
  if [ -f "$target/.bundle-sha256" ] && [ "$(cat "$target/.bundle-sha256")" = "$4" ]; then
    say "    $1 $3 is already unpacked in $target"
    return 0
  fi
  rm -rf "$target.keel-new"
  mkdir -p "$target.keel-new"
  tar -xzf "$2" -C "$target.keel-new" --strip-components=1 --no-same-owner
  printf '%s\n' "$4" >"$target.keel-new/.bundle-sha256"
  chmod -R go-w "$target.keel-new"
  rm -rf "$target"
  mv "$target.keel-new" "$target"
  say "    unpacked to $target"
}

# switch_current KIND VERSION: points OPT/KIND/current at a release, atomically.
switch_current() {
  ln -sfn "releases/$2" "$OPT/$1/current.keel-new"
  mv -fT "$OPT/$1/current.keel-new" "$OPT/$1/current"
}

current_version() {
  link=$(readlink "$OPT/$1/current" 2>/dev/null || true)
  printf '%s' "${link#releases/}"
}

# prune KIND KEEP...: removes releases other than the ones named.
prune() {
  kind=$1
  shift
  for dir in "$OPT/$kind"/releases/*; do
    [ -d "$dir" ] || continue
    keep=0
    for v in "$@"; do if [ "$(basename "$dir")" = "$v" ]; then keep=1; fi; done
    if [ "$keep" = 0 ]; then rm -rf "$dir"; fi
  done
}

# ---- service control -------------------------------------------------------------------------

service_active() { "$SYSTEMCTL" is-active --quiet "$1" 2>/dev/null; }

# start_service UNIT CHANGED: enables the unit and (re)starts it when something changed.
start_service() {
  if [ "$NO_SYSTEMD" = 1 ]; then
    say "    --no-systemd: not starting $1"
    return 0
  fi
  "$SYSTEMCTL" daemon-reload
  "$SYSTEMCTL" enable "$1" >/dev/null 2>&1 || "$SYSTEMCTL" enable "$1"
  if [ "$2" = 1 ] || ! service_active "$1"; then
    "$SYSTEMCTL" restart "$1"
    say "    started $1"
  else
    say "    $1 is running and nothing changed"
  fi
}

# ---- agent -----------------------------------------------------------------------------------

agent_host_id() {
  json_field hostId <"$AGENT_STATE/enrollment.json" 2>/dev/null || true
}

agent_controller() {
  json_field controllerUrl <"$AGENT_STATE/enrollment.json" 2>/dev/null || true
}

# fetch_agent_bundle: sets BUNDLE_FILE, BUNDLE_VERSION, BUNDLE_SUM to a verified agent bundle.
fetch_agent_bundle() {
  step "Getting the agent bundle"
  if [ -n "$BUNDLE" ]; then
    [ -f "$BUNDLE" ] || die "no such bundle: $BUNDLE"
    BUNDLE_FILE=$BUNDLE
    BUNDLE_SUM=$(local_bundle_sum "$BUNDLE")
    BUNDLE_VERSION=$(basename "$BUNDLE" .tar.gz)
    BUNDLE_VERSION=${BUNDLE_VERSION#keel-agent-}
  elif [ -n "$VERSION" ] && [ "$VERSION" != "$KEEL_SERVED_AGENT_VERSION" ]; then
    # A version other than the one served in this script: its checksum from the controller.
    BUNDLE_VERSION=$VERSION
    BUNDLE_SUM=$(fetch_text "$CONTROLLER/install/agent/keel-agent-$VERSION.tar.gz.sha256" | cut -d ' ' -f 1)
    [ -n "$BUNDLE_SUM" ] || die "the controller at $CONTROLLER does not hold keel-agent $VERSION"
  else
    BUNDLE_VERSION=$KEEL_SERVED_AGENT_VERSION
    BUNDLE_SUM=$KEEL_SERVED_AGENT_SHA256
    if [ -z "$BUNDLE_VERSION" ] && [ -z "$KEEL_SERVED_CONTROLLER" ]; then
      # Not served by a controller (a copy from the repository): ask the controller what it has.
      manifest=$(fetch_text "$CONTROLLER/install/agent.json")
      BUNDLE_VERSION=$(printf '%s' "$manifest" | json_field version)
      BUNDLE_SUM=$(printf '%s' "$manifest" | json_field sha256)
    fi
    if [ -z "$BUNDLE_VERSION" ] || [ -z "$BUNDLE_SUM" ]; then
      die "the controller at $CONTROLLER has no agent bundle to give (build it there with npm run build, or pass --bundle FILE)"
    fi
  fi
  if [ -z "$BUNDLE" ]; then
    BUNDLE_FILE=$TMP/keel-agent-$BUNDLE_VERSION.tar.gz
    say "    downloading keel-agent $BUNDLE_VERSION from $CONTROLLER"
    fetch "$CONTROLLER/install/agent/keel-agent-$BUNDLE_VERSION.tar.gz" "$BUNDLE_FILE" ||
      die "could not download the agent bundle from $CONTROLLER"
  fi
  case "$BUNDLE_VERSION" in '' | *[!0-9A-Za-z.-]*) die "not an agent bundle name: $BUNDLE_FILE" ;; esac
  verify "$BUNDLE_FILE" "$BUNDLE_SUM"
}

write_agent_files() {
  step "Writing the program, configuration and service"
  mkdir -p "$BIN" "$ETC" "$AGENT_STATE"
  chmod 755 "$ETC"
  chmod 700 "$AGENT_STATE"
  CHANGED=0
  # The wrapper pins the Node.js found now, so a PATH change cannot swap the runtime.
  if write_if_changed "$BIN/keel-agent" 755 <<EOF; then CHANGED=1; fi
#!/bin/sh
# keel-agent, written by Keel's install.sh: the installed agent on the Node.js it was installed with.
# For \`run\` it is also the upgrade watchdog (docs/deployment.md, Agent upgrades): exit 75 means
# "start again" (into the release an upgrade switched \`current\` to); while an upgrade's trial
# record exists, a release that has not reached the controller by its deadline, or has started
# max_starts times, is switched back to the previous release and the record moved to rolled-back.
# While the controller itself does not answer, the deadline moves on: the release is not judged.
: "\${KEEL_AGENT_STATE_DIR:=$AGENT_STATE}"
export KEEL_AGENT_STATE_DIR
home='$OPT/agent'
if [ "\${1:-}" != run ]; then exec '$NODE' "\$home/current/bin/keel-agent.mjs" "\$@"; fi
KEEL_AGENT_HOME=\$home
export KEEL_AGENT_HOME
trial=\$KEEL_AGENT_STATE_DIR/upgrade/trial
hold=\$trial-hold
field() { sed -n "s/^\$1=//p" "\$trial" | head -n 1; }
# The trial's deadline, or later: while the controller did not answer, the hold file moved it on.
deadline() {
  d=\$(field deadline); h=\$(head -n 1 "\$hold" 2>/dev/null || true)
  case \$h in '' | *[!0-9]*) h=0 ;; esac
  if [ "\${h:-0}" -gt "\${d:-0}" ]; then echo "\$h"; else echo "\${d:-0}"; fi
}
# Exit status 0 when the enrolled controller answers /readyz (asked by this Node.js, not by the
# release on trial; TLS unchecked: it only asks whether the controller is there).
controller_answers() {
  '$NODE' -e '
const u = new URL(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).controllerUrl);
const tls = u.protocol === "https:" || u.protocol === "wss:";
u.protocol = tls ? "https:" : "http:";
u.pathname = u.pathname.replace(/\/+\$/, "") + "/readyz";
u.search = "";
const req = require(tls ? "https" : "http").get(u, { rejectUnauthorized: false, timeout: 10000 }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
req.on("error", () => process.exit(1));
req.on("timeout", () => process.exit(1));
' "\$KEEL_AGENT_STATE_DIR/enrollment.json" >/dev/null 2>&1
}
# Sets \$window (the trial's, its deadline less its start; 60 s when under 10) and \$now; exit status
# 0 while the trial may still be held (KEEL_AGENT_TRIAL_HOLD_SECONDS, default a day, from its start).
may_hold() {
  started=\$(field started); window=\$((\$(field deadline) - \${started:-0}))
  if [ "\$window" -lt 10 ]; then window=60; fi
  now=\$(date +%s)
  [ "\$now" -lt "\$((\${started:-0} + \${KEEL_AGENT_TRIAL_HOLD_SECONDS:-86400}))" ]
}
# Past the deadline while the controller does not answer, the release is not judged: the deadline
# moves on by the trial's window (for at most KEEL_AGENT_TRIAL_HOLD_SECONDS, default a day, from the
# upgrade). When the controller answers again after such a hold, the release gets one whole window
# from then to reach it (it may still wait out its reconnect backoff, or be in its handshake with a
# controller that has just started), not what was left of the last hold. Exit status 0 when it moved.
held() {
  if ! may_hold; then return 1; fi
  if controller_answers; then
    if [ ! -f "\$hold" ] || [ "\$(sed -n 2p "\$hold")" = back ]; then return 1; fi
    printf '%s\\nback\\n' "\$((now + window))" >"\$hold.new" && mv -f "\$hold.new" "\$hold"
    echo "keel-agent: the controller answers again; the trial of \$(field version) has \$window s to reach it" >&2
    return 0
  fi
  echo "\$((now + window))" >"\$hold.new" && mv -f "\$hold.new" "\$hold"
  echo "keel-agent: the controller does not answer; the trial of \$(field version) waits for it" >&2
  return 0
}
# Before the deadline, every few seconds: while the controller does not answer, the deadline stays a
# whole window away (within the same bound) from the next question, \$1 seconds from now, so a
# controller that comes back just before the deadline leaves the release a window to reach it, not
# the seconds that were left. Exit status 0 when it moved the deadline.
hold_while_away() {
  if ! may_hold || controller_answers; then return 1; fi
  if [ ! -f "\$hold" ]; then
    echo "keel-agent: the controller does not answer; the trial of \$(field version) waits for it" >&2
  fi
  echo "\$((now + window + \${1:-0}))" >"\$hold.new" && mv -f "\$hold.new" "\$hold"
  return 0
}
child=
timer=
stopping=
trap 'stopping=1; [ -n "\$child" ] && kill -TERM "\$child" 2>/dev/null' TERM INT
trap '[ -n "\$timer" ] && kill "\$timer" 2>/dev/null' EXIT
while :; do
  timer=
  if [ -f "\$trial" ]; then
    previous=\$(field previous); starts=\$(field starts); most=\$(field max_starts)
    reason=
    if [ "\${starts:-0}" -ge "\${most:-1}" ]; then reason="it exited \$starts times without reaching the controller"
    elif [ "\$(date +%s)" -ge "\$(deadline)" ] && ! held; then reason="it did not reach the controller in time"
    fi
    if [ -n "\$reason" ] && [ -d "\$home/releases/\$previous" ]; then
      ln -sfn "releases/\$previous" "\$home/current.keel-back" && mv -fT "\$home/current.keel-back" "\$home/current"
      { cat "\$trial"; echo "reason=\$reason"; echo "at=\$(date +%s)"; } >"\$trial.back" && mv -f "\$trial.back" "\${trial%/trial}/rolled-back"
      rm -f "\$trial" "\$hold"
      echo "keel-agent: rolled back to \$previous: \$reason" >&2
    else
      sed "s/^starts=.*/starts=\$((\${starts:-0} + 1))/" "\$trial" >"\$trial.next" && mv -f "\$trial.next" "\$trial"
    fi
  fi
  '$NODE' "\$home/current/bin/keel-agent.mjs" "\$@" &
  child=\$!
  if [ -f "\$trial" ]; then
    # The deadline also ends a start that hangs without reaching the controller (the controller
    # answering), and ends with the child. It wakes every 5 s; each question to the controller is a
    # Node.js start, so while it stays away it is asked less often (10, 20, 40, then every 60 s; each
    # hold keeps the deadline a window beyond the next question), and every 5 s again once it answers.
    (
      every=5
      while [ -f "\$trial" ] && kill -0 "\$child" 2>/dev/null; do
        left=\$((\$(deadline) - \$(date +%s)))
        if [ "\$left" -ge 0 ]; then
          if [ "\$left" -ge "\$every" ]; then sleep "\$every"; else sleep "\$((left + 1))"; fi
          next=\$((every * 2)); if [ "\$next" -gt 60 ]; then next=60; fi
          if [ -f "\$trial" ] && hold_while_away "\$next"; then every=\$next; else every=5; fi
        elif ! held; then
          [ -f "\$trial" ] && kill -TERM "\$child" 2>/dev/null
          break
        fi
      done
    ) &
    timer=\$!
  fi
  code=0
  wait "\$child" || code=\$?
  while kill -0 "\$child" 2>/dev/null; do code=0; wait "\$child" || code=\$?; done
  if [ -n "\$timer" ]; then kill "\$timer" 2>/dev/null || true; fi
  child=
  if [ -n "\$stopping" ]; then exit "\$code"; fi
  if [ "\$code" -eq 75 ]; then continue; fi
  if [ -f "\$trial" ]; then sleep 1; continue; fi
  exit "\$code"
done
EOF
  if [ -f "$ETC/agent.env" ]; then
    say "    keeping $ETC/agent.env"
  else
    write_if_changed "$ETC/agent.env" 600 <<EOF || true
# Keel agent settings (docs/operations.md lists them all). Written once by install.sh; edit freely.
KEEL_AGENT_STATE_DIR=$AGENT_STATE
KEEL_AGENT_LOG_LEVEL=info
EOF
    say "    wrote $ETC/agent.env"
  fi
  if unit_text "$OPT/agent/current/systemd/keel-agent.service" | write_if_changed "$UNITS/keel-agent.service" 644; then
    CHANGED=1
    say "    wrote $UNITS/keel-agent.service"
  fi
}

enroll_agent() {
  step "Enrolling this host"
  if [ -f "$AGENT_STATE/enrollment.json" ]; then
    say "    already enrolled as host $(agent_host_id) with $(agent_controller); keeping it"
    if [ "$(agent_controller)" != "$CONTROLLER" ]; then
      warn "this host stays enrolled with $(agent_controller), not $CONTROLLER; to move it, run install.sh uninstall --purge first"
    fi
    return 0
  fi
  if [ -z "$TOKEN" ] && [ -z "$TOKEN_FILE" ]; then
    ask TOKEN "Join token (from Add host in the console)" secret ||
      die "a join token is needed: set KEEL_JOIN_TOKEN, or give --token-file FILE (Add host in the console makes one)"
  fi
  set -- enroll --controller "$CONTROLLER" --pin "$PIN"
  if [ -n "$NAME" ]; then set -- "$@" --name "$NAME"; fi
  if [ -n "$TOKEN_FILE" ]; then set -- "$@" --token-file "$TOKEN_FILE"; fi
  # The token travels in the environment, never on a command line (every local user can read
  # those in /proc).
  # Under `curl | sh` stdin is the rest of this script: the agent reads it only for --token-file -.
  if [ "$TOKEN_FILE" = - ]; then
    KEEL_JOIN_TOKEN=$TOKEN "$BIN/keel-agent" "$@" || die "enrollment failed (see above); nothing was started"
  else
    KEEL_JOIN_TOKEN=$TOKEN "$BIN/keel-agent" "$@" </dev/null || die "enrollment failed (see above); nothing was started"
  fi
  CHANGED=1
}

# online_as JSON [VERSION]: true when a presence answer says online (running VERSION when given).
online_as() {
  case "$1" in *'"online":true'*) ;; *) return 1 ;; esac
  if [ -z "$2" ]; then return 0; fi
  case "$1" in *"\"agentVersion\":\"$2\""*) return 0 ;; esac
  return 1
}

# wait_online [VERSION]: polls the controller until it shows this host online (running agent
# VERSION, when given: after an upgrade, the old agent's session must not count); 1 on timeout.
wait_online() {
  id=$(agent_host_id)
  url=$(agent_controller)
  if [ -z "$id" ] || [ -z "$url" ]; then die "no enrollment found in $AGENT_STATE"; fi
  printf '    waiting for host %s to come online ' "$id"
  waited=0
  while [ "$waited" -lt "$WAIT" ]; do
    if online_as "$(fetch_text "$url/install/hosts/$id")" "${1:-}"; then
      printf ' online\n'
      return 0
    fi
    printf '.'
    sleep 1
    waited=$((waited + 1))
  done
  printf ' not online after %ss\n' "$WAIT"
  return 1
}

agent_hint() {
  if [ "$NO_SYSTEMD" = 1 ]; then
    printf 'run it with: %s run' "$BIN/keel-agent"
  else
    printf 'see: journalctl -u keel-agent -n 50'
  fi
}

install_agent() {
  check_root
  check_systemd
  check_node
  CONTROLLER=${CONTROLLER:-$KEEL_SERVED_CONTROLLER}
  if [ -f "$AGENT_STATE/enrollment.json" ] && [ -z "$CONTROLLER" ]; then CONTROLLER=$(agent_controller); fi
  [ -n "$CONTROLLER" ] || ask CONTROLLER "Controller URL" || die "give the controller's URL with --controller URL"
  CONTROLLER=${CONTROLLER%/}
  if [ -n "$KEEL_SERVED_PIN" ]; then
    if [ -n "$PIN" ] && [ "$PIN" != "$KEEL_SERVED_PIN" ]; then
      die "the pin given ($PIN) is not the key of the controller that served this script ($KEEL_SERVED_PIN): refusing to install. Copy the command again from the console."
    fi
    PIN=$KEEL_SERVED_PIN
  fi
  if [ ! -f "$AGENT_STATE/enrollment.json" ] && [ -z "$PIN" ]; then
    ask PIN "Controller key fingerprint (sha256:...)" || die "give the controller key's fingerprint with --pin sha256:..."
  fi
  TMP=$(mktemp -d)
  fetch_agent_bundle
  step "Installing keel-agent $BUNDLE_VERSION"
  previous=$(current_version agent)
  install_release agent "$BUNDLE_FILE" "$BUNDLE_VERSION" "$BUNDLE_SUM"
  switch_current agent "$BUNDLE_VERSION"
  write_agent_files
  if [ "$previous" != "$BUNDLE_VERSION" ]; then CHANGED=1; fi
  enroll_agent
  step "Starting the agent"
  start_service keel-agent.service "$CHANGED"
  prune agent "$BUNDLE_VERSION" "$previous"
  if [ "$NO_SYSTEMD" = 1 ]; then
    say "Installed keel-agent $BUNDLE_VERSION; not started (--no-systemd): $(agent_hint)"
    return 0
  fi
  step "Waiting for the controller to see this host"
  wait_online "$BUNDLE_VERSION" || die "the agent is installed but the controller does not show it online yet; $(agent_hint)"
  say "Done: this host is online at $(agent_controller) (keel-agent $BUNDLE_VERSION, $(elapsed))."
}

upgrade_agent() {
  check_root
  [ -f "$AGENT_STATE/enrollment.json" ] || die "the agent is not installed and enrolled here; install it first"
  check_systemd
  check_node
  CONTROLLER=${CONTROLLER:-${KEEL_SERVED_CONTROLLER:-$(agent_controller)}}
  CONTROLLER=${CONTROLLER%/}
  TMP=$(mktemp -d)
  fetch_agent_bundle
  previous=$(current_version agent)
  if [ "$previous" = "$BUNDLE_VERSION" ] &&
    [ "$(cat "$OPT/agent/releases/$previous/.bundle-sha256" 2>/dev/null)" = "$BUNDLE_SUM" ]; then
    say "keel-agent $BUNDLE_VERSION is already installed; nothing to do."
    return 0
  fi
  step "Upgrading keel-agent ${previous:-?} -> $BUNDLE_VERSION"
  install_release agent "$BUNDLE_FILE" "$BUNDLE_VERSION" "$BUNDLE_SUM"
  switch_current agent "$BUNDLE_VERSION"
  write_agent_files
  step "Restarting the agent"
  start_service keel-agent.service 1
  if [ "$NO_SYSTEMD" = 1 ]; then
    say "Upgraded to keel-agent $BUNDLE_VERSION; not restarted (--no-systemd)."
    return 0
  fi
  step "Waiting for the controller to see keel-agent $BUNDLE_VERSION online"
  if wait_online "$BUNDLE_VERSION"; then
    prune agent "$BUNDLE_VERSION" "$previous"
    say "Done: keel-agent $BUNDLE_VERSION is online."
    return 0
  fi
  if [ -z "$previous" ] || [ ! -d "$OPT/agent/releases/$previous" ]; then
    die "keel-agent $BUNDLE_VERSION did not come online and there is no previous bundle to go back to; $(agent_hint)"
  fi
  step "Rolling back to keel-agent $previous"
  switch_current agent "$previous"
  "$SYSTEMCTL" restart keel-agent.service
  wait_online "$previous" || warn "the previous bundle did not come online either; $(agent_hint)"
  die "keel-agent $BUNDLE_VERSION did not come online within ${WAIT}s; rolled back to $previous"
}

# stop_supervised: the processes the agent supervised run in sessions of their own and outlive it
# by design (the unit's KillMode=process); removing the agent stops them, each process group
# checked first by its pid and start time (as the agent adopts them: a reused pid is not ours).
stop_supervised() {
  for run in "$AGENT_STATE"/processes/*/run.json; do
    [ -f "$run" ] || continue
    pid=$(tr -d '\n' <"$run" | sed -n 's/.*"pid"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
    ticks=$(tr -d '\n' <"$run" | sed -n 's/.*"startTicks"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
    stat=$(cat "/proc/${pid:-0}/stat" 2>/dev/null) || continue
    # Field 22 of /proc/PID/stat is the start time; the fields after the command name's ")".
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- ${stat##*) }
    shift 19
    if [ "${1:-}" = "$ticks" ] && kill -TERM -"$pid" 2>/dev/null; then
      say "    stopped supervised process $(basename "$(dirname "$run")") (pid $pid)"
    fi
  done
}

uninstall_agent() {
  check_root
  step "Removing the agent"
  if [ "$NO_SYSTEMD" != 1 ] && [ -f "$UNITS/keel-agent.service" ]; then
    "$SYSTEMCTL" disable --now keel-agent.service >/dev/null 2>&1 || true
  fi
  stop_supervised
  rm -f "$UNITS/keel-agent.service" "$BIN/keel-agent"
  if [ "$NO_SYSTEMD" != 1 ]; then "$SYSTEMCTL" daemon-reload >/dev/null 2>&1 || true; fi
  rm -rf "$OPT/agent"
  rmdir "$OPT" 2>/dev/null || true
  if [ "$PURGE" = 1 ]; then
    id=$(agent_host_id)
    rm -rf "$AGENT_STATE" "$ETC/agent.env"
    rmdir "$ETC" 2>/dev/null || true
    say "Removed the agent, its key and its settings.${id:+ Revoke host $id in the console too.}"
  else
    say "Removed the agent. Kept its key and enrollment in $AGENT_STATE and $ETC/agent.env (--purge removes them)."
  fi
}

# ---- controller ------------------------------------------------------------------------------

ensure_keel_user() {
  if [ -z "$ROOT" ]; then
    if ! getent passwd keel >/dev/null 2>&1; then
      useradd --system --user-group --home-dir /var/lib/keel-controller --no-create-home \
        --shell /usr/sbin/nologin keel
      say "    created system user keel"
    fi
    OWNER=keel:keel
  elif [ -f "$ROOT/etc/passwd" ]; then
    if ! grep -q '^keel:' "$ROOT/etc/passwd"; then
      useradd --prefix "$ROOT" --system --user-group --home-dir /var/lib/keel-controller \
        --no-create-home --shell /usr/sbin/nologin keel
      say "    created system user keel in $ROOT"
    fi
    OWNER=$(sed -n 's/^keel:[^:]*:\([0-9]*\):\([0-9]*\):.*/\1:\2/p' "$ROOT/etc/passwd")
  else
    say "    $ROOT has no etc/passwd: files stay owned by $(id -un) (test root)"
    OWNER=$(id -u):$(id -g)
  fi
}

# as_keel COMMAND...: runs a command as the keel user, with the controller's settings from
# controller.env in its environment (read as KEY=value lines, never sourced as shell).
as_keel() {
  (
    while IFS='=' read -r key value; do
      case "$key" in '' | \#*) continue ;; esac
      export "$key=$value"
    done <"$ETC/controller.env"
    if [ -n "$ROOT" ] || [ "$(id -un)" = keel ]; then
      exec "$@"
    elif command -v runuser >/dev/null 2>&1; then
      exec runuser -u keel -- "$@"
    else
      exec setpriv --reuid=keel --regid=keel --init-groups -- "$@"
    fi
  )
}

# controller_join_token: a single-use join token for this host's own agent, from the controller's
# CLI. The embedded database allows one process, so a running controller on it is stopped first.
controller_join_token() {
  if [ "$NO_SYSTEMD" != 1 ] && service_active keel-controller.service &&
    ! grep -q '^DATABASE_URL=' "$ETC/controller.env"; then
    "$SYSTEMCTL" stop keel-controller.service
  fi
  as_keel "$BIN/keel-controller" join-token --ttl 600 --note "this host's agent (install.sh --with-agent)"
}

install_controller() {
  check_root
  check_systemd
  check_node
  [ -n "$BUNDLE" ] || ask BUNDLE "Controller bundle (keel-controller-*.tar.gz)" ||
    die "give the controller bundle with --bundle FILE (npm run build makes it in dist/)"
  [ -f "$BUNDLE" ] || die "no such bundle: $BUNDLE"
  step "Verifying the controller bundle"
  sum=$(local_bundle_sum "$BUNDLE")
  verify "$BUNDLE" "$sum"
  version=$(basename "$BUNDLE" .tar.gz)
  version=${version#keel-controller-}
  version=${version%-linux-*}
  case "$version" in '' | *[!0-9A-Za-z.-]*) die "not a controller bundle name: $BUNDLE" ;; esac
  step "Creating the keel user and directories"
  ensure_keel_user
  mkdir -p "$CONTROLLER_DATA" "$ETC" "$BIN"
  chmod 700 "$CONTROLLER_DATA"
  chown "$OWNER" "$CONTROLLER_DATA"
  chmod 755 "$ETC"
  step "Installing keel-controller $version"
  previous=$(current_version controller)
  install_release controller "$BUNDLE" "$version" "$sum"
  switch_current controller "$version"
  CHANGED=0
  if [ "$previous" != "$version" ]; then CHANGED=1; fi
  if write_if_changed "$BIN/keel-controller" 755 <<EOF; then CHANGED=1; fi
#!/bin/sh
# keel-controller, written by Keel's install.sh: the installed controller on the Node.js it was installed with.
: "\${KEEL_DATA_DIR:=$CONTROLLER_DATA}"
export KEEL_DATA_DIR
exec '$NODE' '$OPT/controller/current/bin/keel-controller.mjs' "\$@"
EOF
  step "Writing the configuration and service"
  PORT=${PORT:-8080}
  if [ -f "$ETC/controller.env" ]; then
    say "    keeping $ETC/controller.env"
  else
    [ -n "$PUBLIC_URL" ] || PUBLIC_URL="http://$(hostname -f 2>/dev/null || hostname):$PORT"
    {
      say "# Keel controller settings (docs/operations.md lists them all). Written once by install.sh."
      say "KEEL_PUBLIC_URL=$PUBLIC_URL"
      say "KEEL_PORT=$PORT"
      say "KEEL_DATA_DIR=$CONTROLLER_DATA"
      if [ -n "$DATABASE_URL" ]; then say "DATABASE_URL=$DATABASE_URL"; fi
    } | write_if_changed "$ETC/controller.env" 640 || true
    chown "root:${OWNER#*:}" "$ETC/controller.env"
    CHANGED=1
    say "    wrote $ETC/controller.env"
  fi
  if unit_text "$OPT/controller/current/systemd/keel-controller.service" |
    write_if_changed "$UNITS/keel-controller.service" 644; then
    CHANGED=1
    say "    wrote $UNITS/keel-controller.service"
  fi
  AGENT_TOKEN=''
  if [ "$WITH_AGENT" = 1 ] && [ ! -f "$AGENT_STATE/enrollment.json" ]; then
    step "Making a join token for this host's agent"
    AGENT_TOKEN=$(controller_join_token) || die "could not make a join token with keel-controller join-token"
    CHANGED=1
  fi
  step "Starting the controller"
  start_service keel-controller.service "$CHANGED"
  prune controller "$version" "$previous"
  if [ "$NO_SYSTEMD" = 1 ]; then
    say "Installed keel-controller $version; not started (--no-systemd)."
    return 0
  fi
  port=$(sed -n 's/^KEEL_PORT=//p' "$ETC/controller.env")
  printf '    waiting for http://127.0.0.1:%s/readyz ' "${port:-8080}"
  waited=0
  until [ -n "$(fetch_text "http://127.0.0.1:${port:-8080}/readyz")" ]; do
    waited=$((waited + 1))
    [ "$waited" -lt "$WAIT" ] || die "the controller is not ready after ${WAIT}s; see: journalctl -u keel-controller -n 50"
    printf '.'
    sleep 1
  done
  printf ' ready\n'
  say "Done: keel-controller $version is running. On a first install the admin password is in its log"
  say "(journalctl -u keel-controller | grep -A1 'First admin'); add hosts with Add host in the console."
  if [ "$WITH_AGENT" = 1 ]; then install_local_agent; fi
}

# install_local_agent: the agent for the controller's own host, from the bundle the controller
# carries, enrolled with the token made above (or already enrolled).
install_local_agent() {
  CONTROLLER=$(sed -n 's/^KEEL_PUBLIC_URL=//p' "$ETC/controller.env")
  PIN=$(as_keel "$BIN/keel-controller" fingerprint) || die "could not read the controller key's fingerprint"
  BUNDLE=''
  for f in "$OPT/controller/current/dist/agent/"keel-agent-*.tar.gz; do
    if [ -f "$f" ]; then BUNDLE=$f; fi
  done
  [ -n "$BUNDLE" ] || die "this controller bundle carries no agent bundle"
  SHA256=''
  TOKEN=$AGENT_TOKEN
  TOKEN_FILE=''
  # This script was not served for the agent: the local controller's values apply.
  KEEL_SERVED_CONTROLLER=''
  KEEL_SERVED_PIN=''
  install_agent
}

uninstall_controller() {
  check_root
  step "Removing the controller"
  if [ "$NO_SYSTEMD" != 1 ] && [ -f "$UNITS/keel-controller.service" ]; then
    "$SYSTEMCTL" disable --now keel-controller.service >/dev/null 2>&1 || true
  fi
  rm -f "$UNITS/keel-controller.service" "$BIN/keel-controller"
  if [ "$NO_SYSTEMD" != 1 ]; then "$SYSTEMCTL" daemon-reload >/dev/null 2>&1 || true; fi
  rm -rf "$OPT/controller"
  rmdir "$OPT" 2>/dev/null || true
  if [ "$PURGE" = 1 ]; then
    rm -rf "$CONTROLLER_DATA" "$ETC/controller.env"
    rmdir "$ETC" 2>/dev/null || true
    say "Removed the controller, its data and settings (an external PostgreSQL database is left alone)."
  else
    say "Removed the controller. Kept its data in $CONTROLLER_DATA and $ETC/controller.env (--purge removes them)."
  fi
}

# ---- command line ----------------------------------------------------------------------------

CONTROLLER=${KEEL_CONTROLLER:-}
PIN=${KEEL_PIN:-}
TOKEN=${KEEL_JOIN_TOKEN:-}
# Only the enroll step gets the token; curl, systemctl and the rest do not inherit it.
unset KEEL_JOIN_TOKEN
TOKEN_FILE=${KEEL_JOIN_TOKEN_FILE:-}
NAME=${KEEL_HOST_NAME:-}
BUNDLE=${KEEL_BUNDLE:-}
SHA256=${KEEL_BUNDLE_SHA256:-}
NODE=${KEEL_NODE:-}
WAIT=${KEEL_WAIT_SECONDS:-60}
NO_SYSTEMD=${KEEL_NO_SYSTEMD:-0}
PURGE=${KEEL_PURGE:-0}
PUBLIC_URL=${KEEL_PUBLIC_URL:-}
PORT=${KEEL_PORT:-}
DATABASE_URL=${DATABASE_URL:-}
WITH_AGENT=${KEEL_WITH_AGENT:-0}
VERSION=${KEEL_AGENT_VERSION:-}

MODE=${1:-}
[ $# -gt 0 ] && shift
TARGET=agent
if [ "$MODE" = upgrade ] || [ "$MODE" = uninstall ]; then
  case "${1:-}" in agent | controller)
    TARGET=$1
    shift
    ;;
  esac
fi

while [ $# -gt 0 ]; do
  case "$1" in
    --controller) need_value "$@"; CONTROLLER=$2; shift 2 ;;
    --pin) need_value "$@"; PIN=$2; shift 2 ;;
    --token)
      need_value "$@"
      TOKEN=$2
      warn "--token shows the join token to every local user (process list); prefer KEEL_JOIN_TOKEN"
      shift 2
      ;;
    --token-file) need_value "$@"; TOKEN_FILE=$2; shift 2 ;;
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --bundle) need_value "$@"; BUNDLE=$2; shift 2 ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --sha256) need_value "$@"; SHA256=$2; shift 2 ;;
    --node) need_value "$@"; NODE=$2; shift 2 ;;
    --wait) need_value "$@"; WAIT=$2; shift 2 ;;
    --public-url) need_value "$@"; PUBLIC_URL=$2; shift 2 ;;
    --port) need_value "$@"; PORT=$2; shift 2 ;;
    --database-url) need_value "$@"; DATABASE_URL=$2; shift 2 ;;
    --no-systemd) NO_SYSTEMD=1; shift ;;
    --with-agent) WITH_AGENT=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) MODE=help; shift ;;
    *) die "unknown option $1 (see install.sh help)" ;;
  esac
done
case "$WAIT" in '' | *[!0-9]*) die "--wait needs a number of seconds" ;; esac
case "$VERSION" in *[!0-9A-Za-z.-]*) die "--version takes a version such as 1.2.3" ;; esac
if [ -n "$TOKEN" ] && [ -n "$TOKEN_FILE" ]; then die "give the join token once: --token-file or KEEL_JOIN_TOKEN/--token"; fi
# umask for everything written: nothing group- or world-writable, secrets set their own modes.
umask 022

case "$MODE" in
  agent) install_agent ;;
  controller) install_controller ;;
  upgrade)
    if [ "$TARGET" = controller ]; then install_controller; else upgrade_agent; fi
    ;;
  uninstall)
    if [ "$TARGET" = controller ]; then uninstall_controller; else uninstall_agent; fi
    ;;
  help) usage ;;
  '')
    usage >&2
    exit 2
    ;;
  *) die "unknown command \"$MODE\" (see install.sh help)" ;;
esac
