#!/usr/bin/env bash
# Planned failover of the master at SELF_HOST:SELF_PORT with its writes paused: the one script the
# kit uses (roles/redis_ha/tasks/failover.yml runs it on the node; `make bench` runs it on loopback).
#  1. CLIENT PAUSE WRITE on the master: from here on its clients wait instead of writing;
#  2. SENTINEL FAILOVER, asking the next Sentinel when one does not answer (a refusal is final);
#  3. as soon as a replica reports role:master with the master's replication id as its previous
#     one (promoted out of this master's stream), or a Sentinel names another master, make this
#     node a replica of it (REPLICAOF, CONFIG REWRITE) and wait until ROLE says so;
#  4. CLIENT UNPAUSE, also on every failure: the waiting writes now get READONLY, and clients
#     retry them on the new master. Nothing acknowledged is lost: the paused node took no write.
# All in one process, so writes wait tens of milliseconds, not the round trips of one task per step.
#
# Usage: failover.sh NAME SELF_HOST SELF_PORT PAUSE_MS WAIT_S SENTINEL_PORT "SENTINELS" "REPLICAS" \
#          REDIS_CLI... -- SENTINEL_CLI...
#   SENTINELS: addresses to ask, in order (host, or host:port for a port other than SENTINEL_PORT);
#   REPLICAS: host:port of the other nodes;
#   REDIS_CLI / SENTINEL_CLI: redis-cli and its options (user, --askpass, TLS), passwords not among them.
# Standard input: the Redis admin user's password, then Sentinel's, one per line.
# Prints key=value lines (new_master, asked, found_after_ms, unpaused_after_ms); on failure the last
# line is "error=<what happened and what to check>" and the exit status is not 0.
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

replid=$(redis "$self_host" "$self_port" INFO replication | field master_replid)
[ -n "$replid" ] || fail "$self_host:$self_port did not answer INFO replication as the admin user; writes were not paused"

[ "$(redis "$self_host" "$self_port" CLIENT PAUSE "$pause_ms" WRITE)" = "OK" ] \
  || fail "$self_host:$self_port refused CLIENT PAUSE WRITE; writes were not paused and nothing changed"
paused_at=$(now_ms)
# Whatever happens from here on, writes are let through again.
unpause() { redis "$self_host" "$self_port" CLIENT UNPAUSE >/dev/null; }
trap unpause EXIT

asked="" reply=""
for address in "${sentinels[@]}"; do
  reply=$(sentinel "$address" SENTINEL FAILOVER "$name")
  if [ -n "$reply" ]; then asked=$address; break; fi
done
[ -n "$asked" ] || fail "no Sentinel answered SENTINEL FAILOVER ($sentinel_list); $self_host keeps the master role"
[ "$reply" = "OK" ] || fail "Sentinel $asked refused the failover ($reply), so $self_host keeps the master role; check that a replica is in sync: SENTINEL REPLICAS $name"
echo "asked=$asked"

# The promoted replica says so first; Sentinel names it up to a second later (its next INFO poll).
deadline=$(( paused_at + wait_s * 1000 ))
new=""
while [ -z "$new" ] && [ "$(now_ms)" -lt "$deadline" ]; do
  for replica in "${replicas[@]}"; do
    info=$(redis "${replica%:*}" "${replica##*:}" INFO replication)
    if [ "$(field role <<<"$info")" = "master" ] && [ "$(field master_replid2 <<<"$info")" = "$replid" ]; then
      new="${replica%:*} ${replica##*:}"; break
    fi
  done
  [ -n "$new" ] && break
  for address in "${sentinels[@]}"; do
    read -r -d '' host port < <(sentinel "$address" SENTINEL GET-MASTER-ADDR-BY-NAME "$name")
    if [[ ${port:-} =~ ^[0-9]+$ ]] && [ "$host:$port" != "$self_host:$self_port" ]; then new="$host $port"; break; fi
  done
  [ -n "$new" ] || sleep 0.05
done
[ -n "$new" ] || fail "no replica took over and no Sentinel named a master other than $self_host within $wait_s s of the failover Sentinel $asked accepted; $self_host keeps the master role"
echo "new_master=$new"
echo "found_after_ms=$(( $(now_ms) - paused_at ))"

# Sentinel converts the old master only seconds after the switch; doing it now (as Sentinel
# would: REPLICAOF, then CONFIG REWRITE) ends the pause.
[ "$(redis "$self_host" "$self_port" REPLICAOF ${new})" = "OK" ] || fail "$self_host refused REPLICAOF $new"
[ "$(redis "$self_host" "$self_port" CONFIG REWRITE)" = "OK" ] || fail "$self_host refused CONFIG REWRITE after REPLICAOF $new"
until [ "$(redis "$self_host" "$self_port" ROLE | head -n 1)" = "slave" ]; do
  [ "$(now_ms)" -lt "$(( deadline + 5000 ))" ] || fail "$self_host did not report itself a replica of $new in time"
  sleep 0.02
done
unpause
trap - EXIT
echo "unpaused_after_ms=$(( $(now_ms) - paused_at ))"
