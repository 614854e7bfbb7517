#!/usr/bin/env bash
# Planned failover of the master at SELF_HOST:SELF_PORT with its writes paused: the one script the
# kit uses (roles/redis_ha/tasks/failover.yml runs it on the node; `make bench` runs it on loopback).
#  1. find a Sentinel that answers (asked before writes stop: a dead one would lengthen the pause);
#  2. CLIENT PAUSE WRITE on the master (its replication pings held off too), then wait until every
#     replica streaming from it has the offset it stopped at: Sentinel may promote any of them, and
#     one promoted short of that offset would drop writes the master had acknowledged (seen under
#     load when writes stopped only once Sentinel had started: 8 KB lost). A replica still behind
#     after 2 s (or a third of the pause) ends it all: writes flow again and the node keeps the
#     master role;
#  3. SENTINEL FAILOVER, asking the next Sentinel when one does not answer (a refusal is final);
#  4. as soon as a replica reports role:master with the master's replication id as its previous
#     one (promoted out of this master's stream), or a Sentinel names another master, make this
#     node a replica of it (REPLICAOF) and let writes through (CLIENT UNPAUSE, also on every
#     failure): the waiting writes now get READONLY, and clients retry them on the new master;
#  5. CONFIG REWRITE (as Sentinel would), and prove nothing acknowledged was lost: the new master
#     was promoted at or past the offset this node had reached when writes stopped.
# All in one process, so writes wait tens of milliseconds, not the round trips of one task per step.
#
# Usage: failover.sh NAME SELF_HOST SELF_PORT PAUSE_MS WAIT_S SENTINEL_PORT "SENTINELS" "REPLICAS" \
#          REDIS_CLI... -- SENTINEL_CLI...
#   SENTINELS: addresses to ask, in order (host, or host:port for a port other than SENTINEL_PORT);
#   REPLICAS: host:port of the other nodes;
#   REDIS_CLI / SENTINEL_CLI: redis-cli and its options (user, --askpass, TLS), passwords not among them.
# Standard input: the Redis admin user's password, then Sentinel's, one per line.
# Prints key=value lines (asked, caught_up_after_ms, new_master, found_after_ms, unpaused_after_ms,
# lost_bytes); on failure the last line is "error=<what happened and what to check>" and the exit
# status is not 0.
set -uo pipefail

if [ "$#" -lt 11 ]; then
  echo "error=usage: failover.sh NAME SELF_HOST SELF_PORT PAUSE_MS WAIT_S SENTINEL_PORT SENTINELS REPLICAS REDIS_CLI... -- SENTINEL_CLI..." >&2
  exit 2
fi
name=$1 self_host=$2 self_port=$3 pause_ms=$4 wait_s=$5 sentinel_port=$6
sentinel_list=$7
read -r -a sentinels <<<"$sentinel_list"
read -r -a replicas <<<"$8"
shift 8
redis_cli=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do redis_cli+=("$1"); shift; done
shift
sentinel_cli=("$@")
IFS= read -r redis_secret || true
IFS= read -r sentinel_secret || true

now_ms() { date +%s%3N; }
fail() { echo "error=$*"; exit 1; }
# redis HOST PORT ARGS...: one command to a Redis node as the admin user, within 1 s.
redis() { printf '%s\n' "$redis_secret" | timeout 1 "${redis_cli[@]}" -h "$1" -p "$2" --raw "${@:3}" 2>/dev/null; }
# sentinel ADDRESS ARGS...: one command to a Sentinel, within 1 s.
sentinel() {
  local host=${1%:*} port=$sentinel_port
  [ "$host" = "$1" ] || port=${1##*:}
  printf '%s\n' "$sentinel_secret" | timeout 1 "${sentinel_cli[@]}" -h "$host" -p "$port" --raw "${@:2}" 2>/dev/null
}
field() { sed -n "s/^$1:\\([^[:space:]]*\\).*/\\1/p"; }

# after KEY: the line that follows the line KEY in a --raw reply of field/value lines.
after() { awk -v key="$1" 'found { print; exit } $0 == key { found = 1 }'; }

replid=$(redis "$self_host" "$self_port" INFO replication | field master_replid)
[ -n "$replid" ] || fail "$self_host:$self_port did not answer INFO replication as the admin user; writes were not paused"

asked=""
for address in "${sentinels[@]}"; do
  if [ -n "$(sentinel "$address" SENTINEL GET-MASTER-ADDR-BY-NAME "$name")" ]; then asked=$address; break; fi
done
[ -n "$asked" ] || fail "no Sentinel answered ($sentinel_list); $self_host keeps the master role and writes were not paused"

# Before Redis 7.2 a paused master still PINGs its replicas every repl-ping-replica-period s: a ping
# that lands between the promotion and REPLICAOF puts this node 14 bytes past the new master, and it,
# then the replicas that follow it, resync in full (seen in CI). Held off while the pause lasts.
ping_period=$(redis "$self_host" "$self_port" CONFIG GET repl-ping-replica-period | sed -n 2p)
[[ ${ping_period:-} =~ ^[0-9]+$ ]] \
  || fail "$self_host:$self_port did not answer CONFIG GET repl-ping-replica-period as the admin user; writes were not paused"
restore_pings() { redis "$self_host" "$self_port" CONFIG SET repl-ping-replica-period "$ping_period" >/dev/null; }
trap restore_pings EXIT
[ "$(redis "$self_host" "$self_port" CONFIG SET repl-ping-replica-period 3600)" = "OK" ] \
  || fail "$self_host:$self_port refused CONFIG SET repl-ping-replica-period; writes were not paused and it keeps the master role"

[ "$(redis "$self_host" "$self_port" CLIENT PAUSE "$pause_ms" WRITE)" = "OK" ] \
  || fail "$self_host:$self_port refused CLIENT PAUSE WRITE; writes were not paused and it keeps the master role"
paused_at=$(now_ms)
# Whatever happens from here on, writes are let through again and the pings resume.
unpause() {
  restore_pings
  redis "$self_host" "$self_port" CLIENT UNPAUSE >/dev/null
}
trap unpause EXIT
paused_for() { echo "writes were paused for $(( $(now_ms) - paused_at )) ms and let through again"; }
# Paused, this node's stream stands still (no writes, pings held off): the offset every
# replica must reach before Sentinel may promote one, and the new master must have been promoted at.
offset=$(redis "$self_host" "$self_port" INFO replication | field master_repl_offset)
[[ ${offset:-} =~ ^[0-9]+$ ]] || fail "$self_host did not answer INFO replication once paused; $(paused_for), and it keeps the master role"

# A replica seconds behind is in trouble: give up then rather than hold writes for long.
catch_up_ms=$(( pause_ms / 3 < 2000 ? pause_ms / 3 : 2000 ))
while :; do
  behind=""
  for replica in "${replicas[@]}"; do
    info=$(redis "${replica%:*}" "${replica##*:}" INFO replication)
    # A replica that is not streaming (down, or its link broken) is one Sentinel does not promote.
    [ "$(field role <<<"$info")" = "slave" ] && [ "$(field master_link_status <<<"$info")" = "up" ] || continue
    got=$(field slave_repl_offset <<<"$info")
    if [[ ${got:-} =~ ^[0-9]+$ ]] && (( got < offset )); then behind+=" $replica ($(( offset - got )) bytes behind)"; fi
  done
  [ -n "$behind" ] || break
  (( $(now_ms) - paused_at < catch_up_ms )) \
    || fail "replicas did not catch up with $self_host within $catch_up_ms ms:$behind; $(paused_for), and $self_host keeps the master role; retry once replication lag is lower"
  sleep 0.005
done
echo "caught_up_after_ms=$(( $(now_ms) - paused_at ))"

reply=""
for address in "$asked" "${sentinels[@]}"; do
  reply=$(sentinel "$address" SENTINEL FAILOVER "$name")
  if [ -n "$reply" ]; then asked=$address; break; fi
done
[ -n "$reply" ] || fail "no Sentinel answered SENTINEL FAILOVER ($sentinel_list); $(paused_for), and $self_host keeps the master role"
[ "$reply" = "OK" ] || fail "Sentinel $asked refused the failover ($reply); $(paused_for), and $self_host keeps the master role; check that a replica is in sync: SENTINEL REPLICAS $name"
echo "asked=$asked"

# The promoted replica says so first; Sentinel names it up to a second later (its next INFO poll),
# so the replicas are asked every 10 ms and the Sentinels every tenth round.
deadline=$(( paused_at + wait_s * 1000 ))
new="" new_info="" round=0
while [ -z "$new" ] && [ "$(now_ms)" -lt "$deadline" ]; do
  for replica in "${replicas[@]}"; do
    info=$(redis "${replica%:*}" "${replica##*:}" INFO replication)
    if [ "$(field role <<<"$info")" = "master" ] && [ "$(field master_replid2 <<<"$info")" = "$replid" ]; then
      new="${replica%:*} ${replica##*:}" new_info=$info; break
    fi
  done
  [ -n "$new" ] && break
  if (( round++ % 10 == 9 )); then
    for address in "${sentinels[@]}"; do
      read -r -d '' host port < <(sentinel "$address" SENTINEL GET-MASTER-ADDR-BY-NAME "$name")
      if [[ ${port:-} =~ ^[0-9]+$ ]] && [ "$host:$port" != "$self_host:$self_port" ]; then new="$host $port"; break; fi
    done
    # A failover the Sentinel gave up on (-failover-abort-*): it still names this node, with no
    # failover in progress. No use pausing writes any longer.
    master=$(sentinel "$asked" SENTINEL MASTER "$name")
    if [ -z "$new" ] && [ "$(after ip <<<"$master"):$(after port <<<"$master")" = "$self_host:$self_port" ] \
      && [ -z "$(after failover-state <<<"$master")" ] && [[ $(after flags <<<"$master") != *failover_in_progress* ]]; then
      fail "Sentinel $asked accepted the failover and then gave it up (its log says why: -failover-abort-*); $(paused_for), and $self_host keeps the master role"
    fi
  fi
  [ -n "$new" ] || sleep 0.01
done
[ -n "$new" ] || fail "no replica took over and no Sentinel named a master other than $self_host within $wait_s s of the failover Sentinel $asked accepted; $self_host keeps the master role"
echo "new_master=$new"
echo "found_after_ms=$(( $(now_ms) - paused_at ))"

# Sentinel converts the old master only seconds after the switch; doing it now ends the pause.
# Once REPLICAOF answers OK this node refuses writes (READONLY), so the pause can end.
[ "$(redis "$self_host" "$self_port" REPLICAOF ${new})" = "OK" ] || fail "$self_host refused REPLICAOF $new"
unpause
trap - EXIT
echo "unpaused_after_ms=$(( $(now_ms) - paused_at ))"

[ "$(redis "$self_host" "$self_port" CONFIG REWRITE)" = "OK" ] || fail "$self_host refused CONFIG REWRITE after REPLICAOF $new"
[ "$(redis "$self_host" "$self_port" ROLE | head -n 1)" = "slave" ] || fail "$self_host did not report itself a replica of $new after REPLICAOF"

# The new master took over at second_repl_offset - 1; anything this node had past that is lost.
[ -n "$new_info" ] || new_info=$(redis "${new% *}" "${new#* }" INFO replication)
[ "$(field master_replid2 <<<"$new_info")" = "$replid" ] \
  || fail "$new does not carry $self_host's stream as its previous one (a second failover, or it answered no INFO), so no offset proves the writes kept; the failover itself is done: check SENTINEL MASTER $name"
promoted_at=$(field second_repl_offset <<<"$new_info")
[[ ${promoted_at:-} =~ ^[0-9]+$ && ${offset:-} =~ ^[0-9]+$ ]] \
  || fail "could not read the offsets that prove no write was lost ($self_host: ${offset:-none}, $new: ${promoted_at:-none}); the failover itself is done"
lost=$(( offset - (promoted_at - 1) ))
(( lost > 0 )) || lost=0
echo "lost_bytes=$lost"
(( lost == 0 )) || fail "$new was promoted $lost bytes short of what $self_host had taken when writes stopped: writes acknowledged just before the failover may be lost; compare the app's records with the data"
