#!/usr/bin/env bash
# Install and run the CRM on one machine, without Docker.
#
#   scripts/setup.sh setup            install everything, create demo data and keys, start
#   scripts/setup.sh start|stop|restart|status
#   scripts/setup.sh logs [postgres|api|worker|nocodb]
#   scripts/setup.sh update           new dependencies and pending migrations, no data lost
#   scripts/setup.sh reset [--yes]    delete all data: schema and demo data from scratch
#   scripts/setup.sh backup           dump the database into CRM_BACKUP_DIR
#   scripts/setup.sh restore FILE     replace the database with a backup
#   scripts/setup.sh test [ARGS]      run pytest (creates .venv when missing)
#
# Configuration comes from the environment and .env (the environment wins), read by
# api/config.py: this script asks it for the data folder and ports, so both agree.
set -euo pipefail

ORIG_PWD=$PWD
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CRM="$VENV/bin/crm"
STAMP="$VENV/.crm-install-stamp"
START_TIMEOUT=30 # seconds for the API to answer /api/health (and the worker to start)
STOP_TIMEOUT=15  # seconds between SIGTERM and SIGKILL
NOCODB_START_TIMEOUT=${NOCODB_START_TIMEOUT:-90} # seconds for NocoDB to answer /api/v1/health
NOCODB_DIR="$ROOT/nocodb"
NOCODB_STAMP="$NOCODB_DIR/node_modules/.crm-install-stamp"

info() { printf '%s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Uso: scripts/setup.sh COMANDO

  setup             instala dependencias, crea .env, la base de datos, datos y claves
                    de demostración, e inicia PostgreSQL, la API, el worker de WhatsApp
                    y NocoDB (con una base por marca; CRM_NOCODB=0 lo omite)
  start             inicia PostgreSQL (embebido), la API, el worker y NocoDB en segundo plano
  stop              detiene NocoDB, el worker, la API y PostgreSQL (embebido)
  restart           stop + start
  status            estado de cada servicio (código 0 solo si todo corre)
  logs [SERVICIO]   últimas líneas y seguimiento del log (postgres, api, worker o nocodb;
                    sin nada: todos)
  update            instala dependencias nuevas y aplica migraciones (sin perder datos)
  reset [--yes]     BORRA todos los datos y recrea el esquema y los datos de demostración
  backup            crea un respaldo de la base de datos e imprime su ruta
  restore ARCHIVO   reemplaza la base de datos por un respaldo
  test [ARGS]       ejecuta las pruebas (pytest ARGS)
  help              esta ayuda

Las variables de entorno ganan sobre .env (ver .env.example).
EOF
}

# ------------------------------------------------------------------ python environment

check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "no se encontró $PYTHON: instale Python 3.11 o superior"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
    die "se necesita Python 3.11 o superior ($PYTHON es $("$PYTHON" -V 2>&1))"
}

install_stamp() {
  "$PY" -c 'import hashlib, sys
print(sys.version.split()[0], hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())'
}

# ensure_venv [force]: .venv with the project installed; pip runs only when pyproject.toml
# changed since the last install (or with "force").
ensure_venv() {
  local force=${1:-}
  if [[ ! -x $PY ]]; then
    check_python
    info "creando el entorno virtual .venv"
    "$PYTHON" -m venv "$VENV" ||
      die "no se pudo crear .venv (en Debian/Ubuntu: apt-get install python3-venv)"
  fi
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
    die ".venv usa un Python anterior a 3.11: bórrelo (rm -rf .venv) y ejecute setup otra vez"
  local want
  want=$(install_stamp)
  if [[ $force == force || ! -x $CRM || ! -f $STAMP || $(<"$STAMP") != "$want" ]]; then
    info "instalando dependencias (pip install -e '.[test]')"
    "$PY" -m pip install --quiet --disable-pip-version-check -e '.[test]' ||
      die "pip install falló: revise el mensaje anterior y la conexión a PyPI"
    printf '%s\n' "$want" >"$STAMP"
  fi
}

require_venv() {
  [[ -x $CRM ]] || die "el proyecto no está instalado: ejecute primero scripts/setup.sh setup"
}

# ------------------------------------------------------------------ configuration

# Sets DATA_DIR, BACKUP_DIR, API_HOST, API_PORT, API_URL, PUBLIC_URL, EMBEDDED, PG_WHERE
# and the paths below from api/config.py (environment first, then .env, then defaults).
load_settings() {
  local out
  out=$("$PY" - <<'EOF'
import shlex
from urllib.parse import urlsplit

from api import roles
from api.config import settings

s = settings()
host = s.api_host or "127.0.0.1"
local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
url_host = f"[{local}]" if ":" in local else local
db = urlsplit(roles.admin_url(s))
values = {
    "DATA_DIR": s.data_dir,
    "BACKUP_DIR": s.backup_dir,
    "API_HOST": host,
    "API_PORT": s.api_port,
    "API_URL": f"http://{url_host}:{s.api_port}",
    "PUBLIC_URL": s.public_base_url,
    "EMBEDDED": 1 if s.embedded else 0,
    "PG_WHERE": f"{db.hostname}:{db.port or 5432}/{roles.database_name(s)}",
    "NOCODB_ENABLED": 1 if s.nocodb_enabled else 0,
    "NOCODB_PORT": s.nocodb_port,
    "NOCODB_URL": f"http://127.0.0.1:{s.nocodb_port}",
}
for name, value in values.items():
    print(f"{name}={shlex.quote(str(value))}")
EOF
  ) || die "configuración inválida (revise .env y las variables CRM_*)"
  eval "$out"
  RUN_DIR="$DATA_DIR/run"
  LOG_DIR="$DATA_DIR/logs"
  PID_FILE="$RUN_DIR/api.pid"
  API_LOG="$LOG_DIR/api.log"
  WORKER_PID_FILE="$RUN_DIR/worker.pid"
  WORKER_LOG="$LOG_DIR/worker.log"
  KEYS_FILE="$DATA_DIR/demo-keys.txt"
  NOCODB_PID_FILE="$RUN_DIR/nocodb.pid"
  NOCODB_LOG="$LOG_DIR/nocodb.log"
}

# .env from .env.example with fresh random secrets (every empty *SECRET*/*PASSWORD* and
# WHATSAPP_VERIFY_TOKEN), only when the secrets do not already come from the environment
# (CI, tests, containers). An existing .env keeps its values and gains the variables a
# newer .env.example added (new secrets generated the same way), so updates need no edit.
ensure_env_file() {
  if [[ -n ${CRM_SECRET_KEY:-} ]]; then
    [[ -f .env ]] || info "CRM_SECRET_KEY viene del entorno: no se crea .env"
    return 0
  fi
  [[ -f .env.example ]] || die "falta .env.example"
  "$PY" - <<'EOF' || die "no se pudo crear o completar .env"
import os
import re
import secrets
import sys

from api.config import ROOT, settings

s = settings()
env = ROOT / ".env"
existing = set()
if env.exists():
    existing = {m.group(1) for m in re.finditer(r"^([A-Z0-9_]+)=", env.read_text(), re.M)}
# A cluster created before .env existed keeps the superuser password it was created with.
cluster = s.embedded and (s.data_dir / "pg" / "PG_VERSION").exists()
lines, added = [], []
for line in (ROOT / ".env.example").read_text().splitlines():
    var = re.match(r"([A-Z0-9_]+)=", line)
    if env.exists() and (not var or var.group(1) in existing):
        continue
    m = re.fullmatch(r"([A-Z0-9_]*(?:SECRET|PASSWORD)[A-Z0-9_]*|WHATSAPP_VERIFY_TOKEN)=\s*", line)
    if m:
        value = secrets.token_urlsafe(32)
        if cluster and m.group(1) == "CRM_PG_SUPERUSER_PASSWORD":
            value = s.pg_superuser_password
            print(f"aviso: {s.data_dir / 'pg'} ya existía: se conserva su contraseña de "
                  "superusuario en .env", file=sys.stderr)
        line = f"{m.group(1)}={value}"
    lines.append(line)
    if var:
        added.append(var.group(1))
if env.exists():
    if added:
        with open(env, "a") as f:
            f.write("\n# Añadidas por setup.sh desde .env.example\n" + "\n".join(lines) + "\n")
        print("variables nuevas en .env: " + ", ".join(added), file=sys.stderr)
    sys.exit(0)
tmp = ROOT / ".env.tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(tmp, env)
print(".env creado con secretos aleatorios (no lo comparta ni lo suba a git)", file=sys.stderr)
EOF
}

# ------------------------------------------------------------------ services

# ------------------------------------------------------------------ background processes
# The services this script starts (api, worker, nocodb) share these: a pid file checked
# against the process's command line, a launch in its own session, a TERM-then-KILL stop.

# pid_from FILE PATTERN...: the pid in FILE while that process runs and its command line
# (between spaces) matches one of the glob PATTERNs; fails otherwise (no file, stale pid,
# a pid reused by another program).
pid_from() {
  local file=$1 pid args pattern
  shift
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  else
    args=$(ps -o args= -p "$pid" 2>/dev/null || true)
  fi
  for pattern in "$@"; do
    # shellcheck disable=SC2053  # the pattern is a glob on purpose
    if [[ " $args " == $pattern ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

# launch LOG PIDFILE HEADER CMD...: run CMD in the background in its own session (it
# outlives this script and stops as one process group), appending to LOG (rotated past
# 20 MB) after a HEADER line; its pid goes to PIDFILE and to LAUNCHED_PID.
LAUNCHED_PID=""
launch() {
  local log=$1 pidfile=$2 header=$3
  shift 3
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if [[ -f $log && $(wc -c <"$log") -gt 20000000 ]]; then
    mv -f "$log" "$log.1"
  fi
  printf '=== %s: %s ===\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$header" >>"$log"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" </dev/null >>"$log" 2>&1 &
  else
    nohup "$@" </dev/null >>"$log" 2>&1 &
  fi
  LAUNCHED_PID=$!
  printf '%s\n' "$LAUNCHED_PID" >"$pidfile"
}

# stop_process PID PIDFILE LABEL STOPPED: SIGTERM to its process group, SIGKILL after
# STOP_TIMEOUT seconds; then "LABEL: STOPPED".
stop_process() {
  local pid=$1 pidfile=$2 label=$3 stopped=$4 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    info "$label: no terminó en ${STOP_TIMEOUT} s, se fuerza (SIGKILL)"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  info "$label: $stopped"
}

# Prints the pid of the running API started by this script; fails when there is none.
api_pid() { pid_from "$PID_FILE" "*crm*serve*"; }

# url_ok URL: the URL answers 200 within 3 seconds.
url_ok() {
  "$PY" - "$1" <<'EOF' 2>/dev/null
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

port_free() {
  "$PY" - "$API_HOST" "$API_PORT" <<'EOF'
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        sys.exit(1)
EOF
}

# Fails clearly when the API's port is taken by another program (our API is not).
check_api_port() {
  if ! api_running && ! port_free; then
    die "el puerto $API_PORT ya está en uso (otro programa lo ocupa): defina CRM_API_PORT con un puerto libre"
  fi
}

start_postgres() {
  if [[ $EMBEDDED == 1 ]]; then
    "$CRM" pg start || die "PostgreSQL no pudo iniciar (log: $LOG_DIR/postgres.log)"
  fi
}

stop_postgres() {
  if [[ $EMBEDDED == 1 ]]; then
    "$CRM" pg stop || die "no se pudo detener PostgreSQL"
  fi
}

# show_log_tail LOG: its last lines, on stderr (when a service failed to start).
show_log_tail() {
  if [[ -f $1 ]]; then
    info "--- últimas líneas de $1 ---"
    tail -n 30 "$1" >&2
    info "---"
  fi
}

# wait_health PID: until /api/health answers 200, the process dies or START_TIMEOUT passes.
wait_health() {
  local pid=$1 i
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$API_LOG"
      rm -f "$PID_FILE"
      die "la API terminó al iniciar (ver el log arriba)"
    fi
    if url_ok "$API_URL/api/health"; then
      return 0
    fi
    sleep 0.25
  done
  show_log_tail "$API_LOG"
  stop_api >/dev/null 2>&1 || true
  die "la API no respondió en $API_URL/api/health en ${START_TIMEOUT} s; se detuvo"
}

start_api() {
  local pid
  if pid=$(api_pid); then
    wait_health "$pid"
    info "API: ya estaba corriendo (pid $pid) en $API_URL"
    return 0
  fi
  check_api_port
  launch "$API_LOG" "$PID_FILE" "inicio de la API en $API_URL" "$CRM" serve
  pid=$LAUNCHED_PID
  wait_health "$pid"
  info "API: corriendo (pid $pid) en $API_URL"
}

stop_api() {
  local pid
  if ! pid=$(api_pid); then
    rm -f "${PID_FILE:?}"
    info "API: no estaba corriendo"
    return 0
  fi
  stop_process "$pid" "$PID_FILE" API detenida
}

api_running() { api_pid >/dev/null; }

# ------------------------------------------------------------------ the WhatsApp worker

# Prints the pid of the running worker started by this script; fails when there is none.
worker_pid() { pid_from "$WORKER_PID_FILE" "*crm worker *"; }

worker_running() { worker_pid >/dev/null; }

# wait_worker PID SINCE: until the worker logs that it started (after byte SINCE of its
# log), it dies, or START_TIMEOUT passes.
wait_worker() {
  local pid=$1 since=$2 i
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$WORKER_LOG"
      rm -f "$WORKER_PID_FILE"
      die "el worker terminó al iniciar (ver el log arriba)"
    fi
    if grep -q 'worker: iniciado' <(tail -c "+$((since + 1))" "$WORKER_LOG" 2>/dev/null); then
      return 0
    fi
    sleep 0.25
  done
  show_log_tail "$WORKER_LOG"
  stop_worker >/dev/null 2>&1 || true
  die "el worker no inició en ${START_TIMEOUT} s; se detuvo"
}

start_worker() {
  local pid since
  if pid=$(worker_pid); then
    info "worker: ya estaba corriendo (pid $pid)"
    return 0
  fi
  since=0
  [[ -f $WORKER_LOG ]] && since=$(wc -c <"$WORKER_LOG")
  launch "$WORKER_LOG" "$WORKER_PID_FILE" "inicio del worker de WhatsApp" "$CRM" worker
  pid=$LAUNCHED_PID
  [[ -f $WORKER_LOG.1 && $(wc -c <"$WORKER_LOG") -lt $since ]] && since=0  # rotated just now
  wait_worker "$pid" "$since"
  info "worker: corriendo (pid $pid; log $WORKER_LOG)"
  if grep -q 'NO llegan a los clientes' <(tail -c "+$((since + 1))" "$WORKER_LOG"); then
    info "worker: sin credenciales de WhatsApp para algún proveedor: sus respuestas se graban, no se envían"
  fi
}

# On SIGTERM the worker finishes the batch it is sending, then exits.
stop_worker() {
  local pid
  if ! pid=$(worker_pid); then
    rm -f "${WORKER_PID_FILE:?}"
    info "worker: no estaba corriendo"
    return 0
  fi
  stop_process "$pid" "$WORKER_PID_FILE" worker detenido
}

postgres_running() {
  if [[ $EMBEDDED == 1 ]]; then
    "$CRM" pg status >/dev/null 2>&1
  else
    "$PY" - <<'EOF' 2>/dev/null
import psycopg

from api import roles
from api.config import settings

psycopg.connect(roles.role_url(roles.OWNER, settings()), connect_timeout=5).close()
EOF
  fi
}

# ------------------------------------------------------------------ NocoDB (brand staff's grids)

nocodb_install_stamp() {
  cat "$NOCODB_DIR/package.json" "$NOCODB_DIR/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1
}

nocodb_installed() {
  "$PY" -m nocodb.server installed 2>/dev/null
}

# ensure_nocodb: nocodb/node_modules from package-lock.json (npm install), only when missing or
# when package.json/package-lock.json changed since the last install (a stamp file).
# Returns 1 with a message when npm is missing; dies when npm itself fails.
ensure_nocodb() {
  local want
  if ! command -v npm >/dev/null 2>&1; then
    info "NocoDB: npm no está instalado, se omite (instale Node.js y npm, luego scripts/setup.sh setup)"
    return 1
  fi
  want=$(nocodb_install_stamp)
  if [[ -f $NOCODB_STAMP && $(<"$NOCODB_STAMP") == "$want" ]] && nocodb_installed; then
    return 0
  fi
  info "NocoDB: instalando con npm en nocodb/ (la primera vez tarda unos minutos: Node 22 y sqlite3)"
  (
    cd "$NOCODB_DIR" || exit 1
    # The versions of package-lock.json (npm ci refuses this lock: it lacks other platforms'
    # optional packages). nocodb-sdk's preinstall demands pnpm: scripts off, then build the
    # one native module NocoDB needs.
    npm install --ignore-scripts --no-audit --no-fund --loglevel=error &&
      npm rebuild sqlite3 --loglevel=error
  ) >&2 || die "npm no pudo instalar NocoDB (ver el mensaje anterior)"
  nocodb_installed || die "NocoDB quedó incompleto en nocodb/node_modules: bórrelo y ejecute setup otra vez"
  printf '%s\n' "$want" >"$NOCODB_STAMP"
}

# Prints the pid of the running NocoDB started by this script; fails when there is none.
nocodb_pid() { pid_from "$NOCODB_PID_FILE" "*nocodb/start.mjs*" "*nocodb.server*"; }

nocodb_running() { nocodb_pid >/dev/null; }

# start_nocodb [provision]: install when needed, start on 127.0.0.1:NOCODB_PORT, wait for
# /api/v1/health; with "provision", create or update every brand's base afterwards.
start_nocodb() {
  local pid i
  [[ $NOCODB_ENABLED == 1 ]] || return 0
  ensure_nocodb || return 0
  if ! pid=$(nocodb_pid); then
    if ! API_HOST=127.0.0.1 API_PORT=$NOCODB_PORT port_free; then
      die "el puerto $NOCODB_PORT de NocoDB ya está en uso (otro programa lo ocupa): defina NOCODB_PORT con un puerto libre, o CRM_NOCODB=0"
    fi
    # nocodb.server creates its metadata database when missing, then execs Node 22.
    NO_COLOR=1 launch "$NOCODB_LOG" "$NOCODB_PID_FILE" "inicio de NocoDB en $NOCODB_URL" \
      "$PY" -m nocodb.server run
    pid=$LAUNCHED_PID
  fi
  for ((i = 0; i < NOCODB_START_TIMEOUT * 2; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$NOCODB_LOG"
      rm -f "$NOCODB_PID_FILE"
      die "NocoDB terminó al iniciar (ver el log arriba)"
    fi
    url_ok "$NOCODB_URL/api/v1/health" && break
    sleep 0.5
  done
  if ! url_ok "$NOCODB_URL/api/v1/health"; then
    show_log_tail "$NOCODB_LOG"
    stop_nocodb >/dev/null 2>&1 || true
    die "NocoDB no respondió en $NOCODB_URL/api/v1/health en ${NOCODB_START_TIMEOUT} s; se detuvo"
  fi
  info "NocoDB: corriendo (pid $pid) en $NOCODB_URL"
  if [[ ${1:-} == provision ]]; then
    NOCODB_URL=$NOCODB_URL "$PY" -m nocodb.provision || die "no se pudo preparar NocoDB (ver el mensaje anterior)"
  fi
}

stop_nocodb() {
  local pid
  if ! pid=$(nocodb_pid); then
    rm -f "${NOCODB_PID_FILE:?}"
    if [[ $NOCODB_ENABLED == 1 ]]; then
      info "NocoDB: no estaba corriendo"
    fi
    return 0
  fi
  stop_process "$pid" "$NOCODB_PID_FILE" NocoDB detenido
}

# After the brands' data changed (reset, restore): bring every base up to date.
reprovision_nocodb() {
  if nocodb_running; then
    NOCODB_URL=$NOCODB_URL "$PY" -m nocodb.provision ||
      info "aviso: NocoDB no se pudo actualizar (python -m nocodb.provision)"
  fi
}

print_nocodb() {
  nocodb_running || return 0
  printf 'NocoDB:        %s   (administrador: NC_ADMIN_EMAIL / NC_ADMIN_PASSWORD de .env)\n' "$NOCODB_URL"
  printf 'Personal de cada marca en NocoDB (editor de su base; python -m nocodb.provision credentials):\n'
  "$PY" -m nocodb.provision credentials 2>/dev/null | while IFS=$'\t' read -r slug email password; do
    printf '  %-22s %s  %s\n' "$slug" "$email" "$password"
  done
}

# ------------------------------------------------------------------ demo data and keys

# True when every key in the keys file is an active key of the current database.
demo_keys_valid() {
  [[ -s $KEYS_FILE ]] || return 1
  "$PY" - "$KEYS_FILE" <<'EOF' 2>/dev/null
import sys

import psycopg

from api import roles
from api.config import settings
from api.services.claves import digest

keys = [line.split()[-1] for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")]
if not keys:
    sys.exit(1)
with psycopg.connect(roles.role_url(roles.OWNER, settings()), connect_timeout=10) as conn:
    n = conn.execute("SELECT count(*) FROM crm.claves_api WHERE hash = ANY(%s) AND revoked_at IS NULL",
                     ([digest(k) for k in keys],)).fetchone()[0]
sys.exit(0 if n == len(keys) else 1)
EOF
}

create_demo_keys() {
  local tmp="$KEYS_FILE.tmp" admin_key brands
  mkdir -p "$DATA_DIR"
  admin_key=$("$CRM" keys create --group-admin --name demo) ||
    die "no se pudo crear la clave de administrador de grupo"
  brands=$("$CRM" brands list) || die "no se pudieron listar las marcas"
  (
    umask 077
    {
      printf '# Claves de API de demostración (scripts/setup.sh); encabezado X-API-Key\n'
      printf '%-24s %s\n' "grupo (admin)" "$admin_key"
      while IFS=$'\t' read -r _ slug _; do
        [[ -n $slug ]] || continue
        key=$("$CRM" keys create --brand "$slug" --role staff --name demo) || exit 1
        printf '%-24s %s\n' "$slug (staff)" "$key"
      done <<<"$brands"
    } >"$tmp"
  ) || {
    rm -f "$tmp"
    die "no se pudieron crear las claves de demostración"
  }
  mv -f "$tmp" "$KEYS_FILE"
  chmod 600 "$KEYS_FILE"
  info "claves de demostración creadas en $KEYS_FILE"
}

ensure_demo_keys() {
  if demo_keys_valid; then
    return 0
  fi
  if [[ -f $KEYS_FILE ]]; then
    info "las claves de $KEYS_FILE no están en la base de datos: se crean nuevas"
  fi
  create_demo_keys
}

print_keys() {
  if [[ -s $KEYS_FILE ]]; then
    printf 'Claves de demostración (encabezado X-API-Key; guardadas en %s):\n' "$KEYS_FILE"
    grep -v '^#' "$KEYS_FILE" | sed 's/^/  /'
  fi
}

print_urls() {
  local base=${PUBLIC_URL:-$API_URL}
  printf 'API:           %s\n' "$API_URL"
  printf 'Documentación: %s/docs\n' "$API_URL"
  printf 'Salud:         %s/api/health\n' "$API_URL"
  printf 'Webhook Meta:   %s/api/webhooks/whatsapp   (token de verificación: WHATSAPP_VERIFY_TOKEN en .env)\n' "$base"
  printf 'Webhook Twilio: %s/api/webhooks/twilio\n' "$base"
  if [[ -z $PUBLIC_URL ]]; then
    printf '                (Meta y Twilio necesitan una URL pública: defina CRM_PUBLIC_BASE_URL)\n'
  fi
}

drop_database() {
  "$PY" - <<'EOF' || die "no se pudo borrar la base de datos"
import sys

from api import installer, pg_embedded, roles
from api.config import settings

s = settings()
try:
    installer.ensure_server(s)
    installer.drop_database(s)
except (installer.InstallError, pg_embedded.EmbeddedError, OSError) as e:
    sys.exit(f"error: {e}")
except Exception as e:  # database errors: the message, not a traceback
    sys.exit(f"error: {e}")
print(f"base de datos {roles.database_name(s)} borrada", file=sys.stderr)
EOF
}

# ------------------------------------------------------------------ commands

cmd_setup() {
  ensure_venv
  ensure_env_file
  load_settings
  check_api_port
  "$CRM" db init || die "crm db init falló"
  "$CRM" seed demo || die "crm seed demo falló"
  ensure_demo_keys
  start_postgres
  start_api
  start_worker
  start_nocodb provision
  printf '\nCRM listo.\n'
  print_urls
  print_keys
  print_nocodb
}

cmd_start() {
  require_venv
  load_settings
  check_api_port
  start_postgres
  start_api
  start_worker
  start_nocodb
  print_urls
  print_nocodb
}

cmd_stop() {
  require_venv
  load_settings
  stop_nocodb
  stop_worker
  stop_api
  stop_postgres
}

cmd_status() {
  require_venv
  load_settings
  local rc=0 pid kind="externo"
  [[ $EMBEDDED == 1 ]] && kind="embebido"
  if postgres_running; then
    printf 'postgres: corriendo   postgresql://%s (%s)\n' "$PG_WHERE" "$kind"
  else
    printf 'postgres: detenido    postgresql://%s\n' "$PG_WHERE"
    rc=3
  fi
  if pid=$(api_pid); then
    if url_ok "$API_URL/api/health"; then
      printf 'api:      corriendo   %s (pid %s; documentación %s/docs)\n' "$API_URL" "$pid" "$API_URL"
    else
      printf 'api:      no responde %s (pid %s; ver scripts/setup.sh logs api)\n' "$API_URL" "$pid"
      rc=3
    fi
  else
    printf 'api:      detenida    %s\n' "$API_URL"
    rc=3
  fi
  if pid=$(worker_pid); then
    printf 'worker:   corriendo   (pid %s; log %s)\n' "$pid" "$WORKER_LOG"
  else
    printf 'worker:   detenido    (envío de WhatsApp; scripts/setup.sh start)\n'
    rc=3
  fi
  if [[ $NOCODB_ENABLED != 1 ]]; then
    printf 'nocodb:   desactivado (CRM_NOCODB=0)\n'
  elif ! nocodb_installed; then
    printf 'nocodb:   no instalado (scripts/setup.sh setup lo instala; necesita npm)\n'
  elif pid=$(nocodb_pid); then
    if url_ok "$NOCODB_URL/api/v1/health"; then
      printf 'nocodb:   corriendo   %s (pid %s)\n' "$NOCODB_URL" "$pid"
    else
      printf 'nocodb:   no responde %s (pid %s; ver scripts/setup.sh logs nocodb)\n' "$NOCODB_URL" "$pid"
      rc=3
    fi
  else
    printf 'nocodb:   detenido    %s\n' "$NOCODB_URL"
    rc=3
  fi
  return "$rc"
}

cmd_logs() {
  require_venv
  load_settings
  local services=() files=() svc
  case ${1:-} in
    "") services=(postgres api worker nocodb) ;;
    postgres | api | worker | nocodb) services=("$1") ;;
    *) die "servicio desconocido: $1 (use postgres, api, worker o nocodb)" ;;
  esac
  for svc in "${services[@]}"; do
    if [[ -f $LOG_DIR/$svc.log ]]; then
      files+=("$LOG_DIR/$svc.log")
    elif [[ -n ${1:-} ]]; then
      die "no existe $LOG_DIR/$svc.log (¿se inició alguna vez?)"
    fi
  done
  ((${#files[@]})) || die "no hay logs en $LOG_DIR todavía"
  exec tail -n 100 -f "${files[@]}"
}

cmd_update() {
  ensure_venv force
  ensure_env_file
  load_settings
  local was_running=0 worker_was_running=0
  api_running && was_running=1
  worker_running && worker_was_running=1
  "$CRM" db upgrade || die "crm db upgrade falló; los datos no se modificaron"
  if ((was_running)); then
    stop_api
    start_api
  fi
  if ((worker_was_running)); then
    stop_worker
    start_worker
  fi
  if nocodb_running; then
    if [[ -f $NOCODB_STAMP && $(<"$NOCODB_STAMP") != "$(nocodb_install_stamp)" ]]; then
      stop_nocodb # new npm packages: installed by start_nocodb
    fi
    start_nocodb provision # and the bases pick up new tables and columns
  fi
  info "actualización lista"
}

cmd_reset() {
  local answer=""
  case ${1:-} in
    --yes | -y) ;;
    "")
      printf "¿Borrar todos los datos? Escriba 'si': " >&2
      read -r answer || true
      [[ $answer == si || $answer == sí ]] || die "cancelado: no se borró nada"
      ;;
    *) die "opción desconocida: $1 (use reset --yes)" ;;
  esac
  require_venv
  load_settings
  local was_running=0 worker_was_running=0
  api_running && was_running=1
  worker_running && worker_was_running=1
  stop_worker
  stop_api
  drop_database
  "$CRM" db init || die "crm db init falló"
  "$CRM" seed demo || die "crm seed demo falló"
  rm -f "$KEYS_FILE"
  create_demo_keys
  if ((was_running)); then
    start_api
  fi
  if ((worker_was_running)); then
    start_worker
  fi
  reprovision_nocodb
  info "datos reiniciados (los respaldos en $BACKUP_DIR se conservan)"
  print_keys
}

cmd_backup() {
  require_venv
  load_settings
  local file
  file=$("$CRM" backup create) || die "el respaldo falló"
  info "respaldo creado"
  printf '%s\n' "$file"
}

cmd_restore() {
  [[ -n ${1:-} ]] || die "indique el archivo: scripts/setup.sh restore ARCHIVO"
  local file=$1
  [[ $file == /* ]] || file="$ORIG_PWD/$file"
  [[ -f $file ]] || die "no existe el archivo $1"
  require_venv
  load_settings
  # Refuse a foreign or broken file before stopping anything.
  "$PY" - "$file" <<'EOF' || exit 1
import sys
from pathlib import Path

from api import backup

try:
    backup.check_dump(Path(sys.argv[1]))
except backup.BackupError as e:
    sys.exit(f"error: {e}")
EOF
  local was_running=0 worker_was_running=0 ok=1
  api_running && was_running=1
  worker_running && worker_was_running=1
  stop_worker
  stop_api
  "$CRM" backup restore "$file" || ok=0
  if ((ok)) && [[ -f $KEYS_FILE ]] && ! demo_keys_valid; then
    rm -f "$KEYS_FILE"
    info "las claves de demostración no están en el respaldo: $KEYS_FILE se borró (setup crea nuevas)"
  fi
  if ((was_running)); then
    start_api
  fi
  if ((worker_was_running)); then
    start_worker
  fi
  ((ok)) || die "la restauración falló (ver el mensaje anterior)"
  reprovision_nocodb
  info "restauración lista"
}

cmd_test() {
  ensure_venv
  # tests/test_nocodb.py starts a real NocoDB: install it first (skipped without npm).
  ensure_nocodb || true
  exec "$PY" -m pytest "$@"
}

main() {
  local cmd=${1:-help}
  (($#)) && shift
  case $cmd in
    setup) cmd_setup ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
      cmd_stop
      cmd_start
      ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    update) cmd_update ;;
    reset) cmd_reset "$@" ;;
    backup) cmd_backup ;;
    restore) cmd_restore "$@" ;;
    test) cmd_test "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "comando desconocido: $cmd"
      ;;
  esac
}

main "$@"
