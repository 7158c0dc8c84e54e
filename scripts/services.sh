#!/usr/bin/env bash
# Make sure the services that integration tests use are running and ready.
# For each service: if it already answers, leave it alone; otherwise start
# it (as root) with the machine's usual command, then wait for readiness
# with a bounded wait. Finally make sure the `test` database exists in
# PostgreSQL and MariaDB. .ci/run names the services today's tests use.
#
# Usage: scripts/services.sh [service...]
#   services: postgres mariadb redis rabbitmq nats mosquitto (default: all)
# Environment:
#   MB_SERVICES_WAIT  seconds to wait for each service to become ready (60)
#
# Exits non-zero, naming the service, if a service fails to start or to
# become ready. Idempotent: a no-op for services that already run.
set -euo pipefail

HOST=127.0.0.1
WAIT=${MB_SERVICES_WAIT:-60}

PG_PORT=5432
MARIADB_PORT=3306
REDIS_PORT=6379
RABBITMQ_PORT=5672
NATS_PORT=4222
MOSQUITTO_PORT=1883

ALL_SERVICES=(postgres mariadb redis rabbitmq nats mosquitto)

die() {
	echo "services.sh: ERROR: $*" >&2
	exit 1
}

# tcp_open PORT: true if a TCP connection to HOST:PORT succeeds within 2 s.
tcp_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# ---- readiness checks (also used to decide whether a service runs) --------

ready_postgres() {
	timeout 5 pg_isready -q -h "$HOST" -p "$PG_PORT"
}

ready_mariadb() {
	timeout 5 mariadb-admin -h "$HOST" -P "$MARIADB_PORT" -uroot \
		--connect-timeout=2 ping >/dev/null 2>&1
}

ready_redis() {
	local reply
	reply=$(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) || return 1
	[ "$reply" = PONG ]
}

ready_rabbitmq() { tcp_open "$RABBITMQ_PORT"; }
ready_nats() { tcp_open "$NATS_PORT"; }
ready_mosquitto() { tcp_open "$MOSQUITTO_PORT"; }

# ---- start commands ------------------------------------------------------------

start_postgres() {
	# shellcheck disable=SC2046 # the documented command relies on word splitting
	pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
}

start_mariadb() {
	[ -d /run/mysqld ] || install -d -o mysql -g mysql /run/mysqld
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

start_redis() {
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

start_rabbitmq() {
	rabbitmq-server -detached
}

start_nats() {
	mkdir -p /var/lib/nats-server
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
		-a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

start_mosquitto() {
	[ -d /run/mosquitto ] || install -d -o mosquitto -g mosquitto /run/mosquitto
	mosquitto -d -c /etc/mosquitto/mosquitto.conf
}

# ---- per-service metadata ----------------------------------------------------

label() {
	case $1 in
	postgres) echo "PostgreSQL $HOST:$PG_PORT" ;;
	mariadb) echo "MariaDB $HOST:$MARIADB_PORT" ;;
	redis) echo "Redis $HOST:$REDIS_PORT" ;;
	rabbitmq) echo "RabbitMQ $HOST:$RABBITMQ_PORT" ;;
	nats) echo "NATS $HOST:$NATS_PORT" ;;
	mosquitto) echo "Mosquitto $HOST:$MOSQUITTO_PORT" ;;
	esac
}

log_hint() {
	case $1 in
	postgres) echo "/var/log/postgresql/" ;;
	mariadb) echo "/var/log/mysql/error.log" ;;
	redis) echo "/var/log/redis/ci.log" ;;
	rabbitmq) echo "/var/log/rabbitmq/" ;;
	nats) echo "/var/log/nats-server.log" ;;
	mosquitto) echo "/var/log/mosquitto/mosquitto.log" ;;
	esac
}

# ensure SERVICE: start SERVICE if it does not answer, then wait until ready.
ensure() {
	local svc=$1 name out start_rc deadline
	name=$(label "$svc")

	if "ready_$svc"; then
		printf '%-27s already running, ready\n' "$name:"
		return 0
	fi

	[ "$(id -u)" -eq 0 ] || echo "services.sh: warning: not root; starting $svc will probably fail" >&2

	local started=$SECONDS
	start_rc=0
	out=$("start_$svc" 2>&1) || start_rc=$?
	if [ "$start_rc" -ne 0 ]; then
		[ -z "$out" ] || printf '%s\n' "$out" >&2
		die "$name: start command failed (exit $start_rc); see $(log_hint "$svc")"
	fi

	deadline=$((SECONDS + WAIT))
	until "ready_$svc"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			[ -z "$out" ] || printf '%s\n' "$out" >&2
			die "$name: started but not ready after ${WAIT}s; see $(log_hint "$svc")"
		fi
		sleep 1
	done
	printf '%-27s started, ready after %ss\n' "$name:" "$((SECONDS - started))"
}

# ---- test databases ------------------------------------------------------------

ensure_db_postgres() {
	local exists
	# Trust auth on 127.0.0.1; the `postgres` superuser exists on every cluster.
	exists=$(psql -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
		"select 1 from pg_database where datname='test'") ||
		die "PostgreSQL: cannot query pg_database as user postgres"
	if [ "$exists" = 1 ]; then
		echo "PostgreSQL: database test exists"
	else
		createdb -h "$HOST" -p "$PG_PORT" -U postgres test ||
			die "PostgreSQL: createdb test failed"
		echo "PostgreSQL: database test created"
	fi
}

ensure_db_mariadb() {
	mariadb -h "$HOST" -P "$MARIADB_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS test' ||
		die "MariaDB: CREATE DATABASE IF NOT EXISTS test failed"
	echo "MariaDB: database test ensured"
}

# ---- main ----------------------------------------------------------------------

services=("$@")
[ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")
for svc in "${services[@]}"; do
	case " ${ALL_SERVICES[*]} " in
	*" $svc "*) ;;
	*) die "unknown service '$svc' (known: ${ALL_SERVICES[*]})" ;;
	esac
done

for svc in "${services[@]}"; do
	ensure "$svc"
done
for svc in "${services[@]}"; do
	case $svc in
	postgres) ensure_db_postgres ;;
	mariadb) ensure_db_mariadb ;;
	esac
done
echo "services.sh: all services ready"
