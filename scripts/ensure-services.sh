#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: MariaDB (or MySQL)
# and Redis on 127.0.0.1, installing them from Debian's packages on a fresh
# machine. Exports GPU_USAGE_TEST_MYSQL_URL and GPU_USAGE_TEST_REDIS_URL.
#
#   source scripts/ensure-services.sh && ensure_services   # from test.sh
#   scripts/ensure-services.sh                             # standalone: prints the exports
#
# Respected when set (nothing local is started or installed for it then):
#   GPU_USAGE_TEST_MYSQL_URL   mysql://user[:password]@host[:port]  (no database)
#   GPU_USAGE_TEST_REDIS_URL   redis://host[:port]
#
# Without them: MariaDB on 127.0.0.1:3306 as root with an empty password, or,
# when root cannot log in over TCP that way (a fresh Debian install only lets
# root in over the local socket), a dedicated test user `gu_test` created over
# the socket. Redis on 127.0.0.1:6379, keeping nothing on disk.

ES_MYSQL_HOST=127.0.0.1
ES_MYSQL_PORT=3306
ES_REDIS_HOST=127.0.0.1
ES_REDIS_PORT=6379
ES_TEST_USER=gu_test
ES_TEST_PASSWORD=gu_test
ES_LOG_DIR=${TMPDIR:-/tmp}

es_log() { printf '  [services] %s\n' "$*" >&2; }
es_die() { printf '  [services] ERROR: %s\n' "$*" >&2; return 1; }

es_sudo() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        es_die "need root for: $*"
    fi
}

es_mysql_cli() { command -v mariadb || command -v mysql; }
es_mysql_admin() { command -v mariadb-admin || command -v mysqladmin; }

# Splits a mysql:// URL into ES_U_USER, ES_U_PASS, ES_U_HOST, ES_U_PORT.
es_parse_mysql_url() {
    local re='^mysql://(([^:@/]+)(:([^@/]*))?@)?([^:/?]+)(:([0-9]+))?'
    if [[ $1 =~ $re ]]; then
        ES_U_USER=${BASH_REMATCH[2]:-root}
        ES_U_PASS=${BASH_REMATCH[4]:-}
        ES_U_HOST=${BASH_REMATCH[5]}
        ES_U_PORT=${BASH_REMATCH[7]:-3306}
    else
        es_die "cannot parse MySQL URL: $1"
    fi
}

# Runs SQL over TCP as the user of the given URL; output without headers.
es_sql_as_url() {
    local url=$1 sql=$2 cli
    cli=$(es_mysql_cli) || es_die "no mariadb/mysql client installed" || return 1
    es_parse_mysql_url "$url" || return 1
    MYSQL_PWD="$ES_U_PASS" "$cli" --protocol=tcp -h "$ES_U_HOST" -P "$ES_U_PORT" \
        -u "$ES_U_USER" --connect-timeout=5 -N -B -e "$sql"
}

es_mysql_alive() {
    local admin
    admin=$(es_mysql_admin) || return 1
    # `ping` succeeds whenever the server answers, even with access denied.
    "$admin" --protocol=tcp -h "$ES_MYSQL_HOST" -P "$ES_MYSQL_PORT" --connect-timeout=2 \
        ping >/dev/null 2>&1
}

es_redis_alive() {
    command -v redis-cli >/dev/null 2>&1 &&
        [ "$(redis-cli -h "$ES_REDIS_HOST" -p "$ES_REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

es_apt_install() {
    es_log "installing $* with apt-get"
    es_sudo apt-get update -qq &&
        es_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

es_wait() {
    local what=$1 check=$2
    for _ in $(seq 1 60); do
        if "$check"; then
            es_log "$what is up"
            return 0
        fi
        sleep 1
    done
    es_die "$what did not come up within 60 s"
}

es_start_mariadb() {
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] &&
        [ ! -x /usr/sbin/mysqld ]; then
        es_apt_install mariadb-server mariadb-client || return 1
    fi
    local daemon=/usr/sbin/mariadbd
    [ -x "$daemon" ] || daemon=/usr/sbin/mysqld
    es_sudo mkdir -p /run/mysqld
    es_sudo chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
        es_log "initialising the MariaDB data directory"
        es_sudo mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    if es_mysql_alive; then
        return 0
    fi
    es_log "starting $daemon (log: $ES_LOG_DIR/gpu-usage-mariadb.log)"
    # Detached and with its own output, so no caller waits on its pipes.
    es_sudo setsid "$daemon" --user=mysql >"$ES_LOG_DIR/gpu-usage-mariadb.log" 2>&1 </dev/null &
    es_wait "MariaDB on $ES_MYSQL_HOST:$ES_MYSQL_PORT" es_mysql_alive || {
        tail -n 20 "$ES_LOG_DIR/gpu-usage-mariadb.log" >&2 || true
        return 1
    }
}

es_start_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        es_apt_install redis-server redis-tools || return 1
    fi
    es_log "starting redis-server on $ES_REDIS_HOST:$ES_REDIS_PORT"
    redis-server --daemonize yes --bind "$ES_REDIS_HOST" --port "$ES_REDIS_PORT" \
        --save "" --appendonly no --logfile "$ES_LOG_DIR/gpu-usage-redis.log" >/dev/null
    es_wait "Redis" es_redis_alive
}

# Picks the account the tests use: root without a password over TCP if that
# works, else a test user created over the local socket.
es_choose_mysql_account() {
    local root_url="mysql://root@$ES_MYSQL_HOST:$ES_MYSQL_PORT"
    if es_sql_as_url "$root_url" "SELECT 1" >/dev/null 2>&1; then
        GPU_USAGE_TEST_MYSQL_URL=$root_url
        return 0
    fi
    local user_url="mysql://$ES_TEST_USER:$ES_TEST_PASSWORD@$ES_MYSQL_HOST:$ES_MYSQL_PORT"
    if ! es_sql_as_url "$user_url" "SELECT 1" >/dev/null 2>&1; then
        es_log "root cannot log in over TCP without a password; creating user $ES_TEST_USER"
        local cli
        cli=$(es_mysql_cli) || return 1
        # ALL on *.*: the tests create and drop gu_test_* databases and one
        # of them changes the GLOBAL time zone for a moment.
        es_sudo "$cli" -u root -e "
            CREATE USER IF NOT EXISTS '$ES_TEST_USER'@'127.0.0.1' IDENTIFIED BY '$ES_TEST_PASSWORD';
            CREATE USER IF NOT EXISTS '$ES_TEST_USER'@'localhost' IDENTIFIED BY '$ES_TEST_PASSWORD';
            GRANT ALL PRIVILEGES ON *.* TO '$ES_TEST_USER'@'127.0.0.1' WITH GRANT OPTION;
            GRANT ALL PRIVILEGES ON *.* TO '$ES_TEST_USER'@'localhost' WITH GRANT OPTION;
            FLUSH PRIVILEGES;" || es_die "could not create the test user over the local socket" || return 1
        es_sql_as_url "$user_url" "SELECT 1" >/dev/null ||
            es_die "the test user cannot log in over TCP" || return 1
    fi
    GPU_USAGE_TEST_MYSQL_URL=$user_url
}

ensure_services() {
    if [ -n "${GPU_USAGE_TEST_MYSQL_URL:-}" ]; then
        es_log "using GPU_USAGE_TEST_MYSQL_URL from the environment"
    else
        if es_mysql_alive; then
            es_log "MariaDB answers on $ES_MYSQL_HOST:$ES_MYSQL_PORT"
        else
            es_start_mariadb || return 1
        fi
        es_choose_mysql_account || return 1
    fi
    es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "SELECT VERSION()" >/dev/null ||
        es_die "cannot log in with GPU_USAGE_TEST_MYSQL_URL" || return 1
    es_log "MySQL server: $(es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "SELECT VERSION()")"

    if [ -n "${GPU_USAGE_TEST_REDIS_URL:-}" ]; then
        es_log "using GPU_USAGE_TEST_REDIS_URL from the environment"
    else
        if es_redis_alive; then
            es_log "Redis answers on $ES_REDIS_HOST:$ES_REDIS_PORT"
        else
            es_start_redis || return 1
        fi
        GPU_USAGE_TEST_REDIS_URL="redis://$ES_REDIS_HOST:$ES_REDIS_PORT"
    fi
    export GPU_USAGE_TEST_MYSQL_URL GPU_USAGE_TEST_REDIS_URL
}

# Drops test databases that crashed runs left behind. In CI everything named
# gu_test_*; on a shared developer machine only those idle for an hour (tables
# created more than 60 minutes ago, or no tables), so concurrent runs survive.
drop_stale_test_databases() {
    local age_filter="HAVING newest IS NULL OR newest < NOW() - INTERVAL 60 MINUTE"
    if [ "${CI:-}" = "true" ] || [ "${GU_TEST_DROP_ALL:-}" = "1" ]; then
        age_filter=""
    fi
    local names
    names=$(es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "
        SELECT s.SCHEMA_NAME, MAX(t.CREATE_TIME) AS newest
        FROM information_schema.SCHEMATA s
        LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME
        WHERE s.SCHEMA_NAME LIKE 'gu\\_test\\_%'
        GROUP BY s.SCHEMA_NAME $age_filter" | cut -f1) || return 1
    local count=0 name
    for name in $names; do
        [[ $name =~ ^gu_test_[0-9a-z]+$ ]] || continue
        es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "DROP DATABASE IF EXISTS \`$name\`" || return 1
        count=$((count + 1))
    done
    es_log "dropped $count leftover test database(s)"
    # SQLite files of crashed runs.
    find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'gu_test_*.db*' -mmin +60 -delete 2>/dev/null || true
    # tests/utc.rs switches the GLOBAL zone to +05:00 for milliseconds and
    # restores it even on panic; only a killed run can leave it behind.
    if [ "$(es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "SELECT @@GLOBAL.time_zone")" = "+05:00" ]; then
        es_log "resetting a GLOBAL time_zone left at +05:00 by a killed run"
        es_sql_as_url "$GPU_USAGE_TEST_MYSQL_URL" "SET GLOBAL time_zone = 'SYSTEM'" || true
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ensure_services
    printf 'export GPU_USAGE_TEST_MYSQL_URL=%q\n' "$GPU_USAGE_TEST_MYSQL_URL"
    printf 'export GPU_USAGE_TEST_REDIS_URL=%q\n' "$GPU_USAGE_TEST_REDIS_URL"
fi
