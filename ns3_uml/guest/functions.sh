# Shell functions of the ns3-uml guest init (ns3_uml/guest/init.py puts them in every
# init.sh). Times are ns of CLOCK_MONOTONIC, which is uptime in UML (it never suspends);
# /proc/uptime has only centiseconds. init.py fills in link_up's poll count.
log() { echo "ns3-uml init: $*" >&2; }
fail() { log "$*"; echo "$*" >> "$OUT/setup.err"; }
mnt() { mount "$@" || log "mount $* failed"; }
# try CMD...: run it, record its error message if it fails.
try() { if ! err=$("$@" 2>&1); then fail "$*: $err"; fi; }
# sc PATH VALUE NAME: write a sysctl.
sc() { { echo "$2" > "$1"; } 2>/dev/null || fail "sysctl $3=$2: cannot write $1"; }
now() { { read -r _; read -r _; read -r _ _ NOW _; } < /proc/timer_list; }
secs() { printf '%d.%09d' $(($1 / 1000000000)) $(($1 % 1000000000)); }
# wait_until NS: sleep until uptime NS, without the 50 us default timer slack.
wait_until() {
  now
  [ "$1" -gt "$NOW" ] || return 0
  (echo 1 > /proc/self/timerslack_ns; exec sleep "$(secs $(($1 - NOW)))")
}
# run NAME COMMAND: run it with its output, times and exit status in $OUT.
run() {
  now; t0=$(secs $NOW)
  echo "$t0" > "$OUT/$1.time"
  /bin/sh -c "$2" < /dev/null > "$OUT/$1.stdout" 2> "$OUT/$1.stderr"
  rc=$?
  now; echo "$t0 $(secs $NOW)" > "$OUT/$1.time"
  echo $rc > "$OUT/$1.rc"
}
# link_up DEV: wait until DEV is up (operstate), at most a few simulated seconds.
link_up() {
  n=0
  while :; do
    read -r state < "/sys/class/net/$1/operstate"
    case $state in up|unknown) return 0 ;; esac
    [ $n -ge __LINK_POLLS__ ] && return 1
    n=$((n + 1))
    # Link state changes reach operstate from a work queue: let it run.
    sleep 0.001
  done
}
# agent_port NAME: wait until the virtio port called NAME has its device node, at most
# as long as link_up waits; its path in $PORT. (Ports are named vport<virtio index>p<id>,
# and the console's virtio index follows the network devices'.)
agent_port() {
  n=0
  while :; do
    for p in /sys/class/virtio-ports/*; do
      if [ -r "$p/name" ] && read -r name < "$p/name" && [ "$name" = "$1" ] &&
         [ -e "/dev/${p##*/}" ]; then
        PORT=/dev/${p##*/}
        return 0
      fi
    done
    [ $n -ge __LINK_POLLS__ ] && return 1
    n=$((n + 1))
    sleep 0.001
  done
}
