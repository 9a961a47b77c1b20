# shellcheck shell=bash
# Shared by dev.sh and test.sh: idempotent installers of the tools the local stack needs, and
# helpers to run background servers in their own process groups so they can be stopped whole.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARGO_LAMBDA_VERSION=1.9.2

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# A content hash of files, to tell whether an install step has to run again.
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# cargo-lambda from PyPI (its wheel carries the prebuilt binary), unless it is already there.
ensure_cargo_lambda() {
  if cargo lambda --version >/dev/null 2>&1; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is needed to install cargo-lambda"
  log "installing cargo-lambda $CARGO_LAMBDA_VERSION (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION" ||
    python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages \
      "cargo-lambda==$CARGO_LAMBDA_VERSION"
  # pip may put the binary where PATH does not look yet (pyenv shims, ~/.local/bin).
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  PATH="$PATH:$(python3 -m site --user-base)/bin"
  export PATH
  cargo lambda --version >/dev/null 2>&1 || die "cargo-lambda did not install"
}

# dynalite, pinned by infra/package-lock.json; reinstalled when the lock file changes.
ensure_node_deps() {
  command -v node >/dev/null || die "Node.js >= 20 and npm are needed for dynalite (apt-get install nodejs npm)"
  local stamp="$ROOT/infra/node_modules/.bridge-lock-hash" want
  want="$(hash_of "$ROOT/infra/package-lock.json")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$ROOT/infra/node_modules/dynalite/cli.js" ]]; then
    return
  fi
  log "installing dynalite (npm ci --prefix infra)"
  npm ci --prefix "$ROOT/infra" --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
}

# .venv with the pinned Python tools (infra/requirements-dev.txt) and what the crypto interop
# test needs (tests/interop/requirements.txt); reinstalled only when one of them changes.
ensure_venv() {
  local venv="$ROOT/.venv" stamp want
  local requirements=("$ROOT/infra/requirements-dev.txt" "$ROOT/tests/interop/requirements.txt")
  stamp="$venv/.requirements-hash"
  want="$(hash_of "${requirements[@]}")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
    return
  fi
  command -v python3 >/dev/null || die "python3 (>= 3.9) is needed for the Python test tools"
  log "installing Python tools into .venv (infra/requirements-dev.txt, tests/interop/requirements.txt)"
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "${requirements[0]}" -r "${requirements[1]}"
  echo "$want" >"$stamp"
}

# Debian's chromium for the sandbox page's browser test (tests/browser), unless it is there.
ensure_chromium() {
  local sudo=""
  ((EUID == 0)) || sudo="sudo"
  if ! command -v chromium >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "chromium is needed for the browser test (apt-get install -y chromium)"
    log "installing chromium (apt-get)"
    $sudo apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null ||
      { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; } ||
      die "chromium did not install"
  fi
  # A CJK font, so the page's Chinese labels are legible in the screenshots (not needed to pass).
  if command -v dpkg >/dev/null && ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
    log "installing a CJK font for the browser screenshots (apt-get)"
    $sudo apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 ||
      { $sudo apt-get update -qq && $sudo apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1; } ||
      log "warning: fonts-wqy-microhei did not install; screenshots will show boxes for Chinese text"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# internal_port BASE: a free port for a listener of our own, in 20000-29999 (derived from BASE), that
# is outside the kernel's ephemeral range (32768-60999): a port another process picked with bind(0)
# (two stacks started side by side, say) and has not bound yet can never be this one.
internal_port() {
  local p=$((20000 + $1 % 10000)) i
  for ((i = 0; i < 200; i++)); do
    port_open "$p" || {
      echo "$p"
      return 0
    }
    p=$((20000 + (p - 19999) % 10000))
  done
  die "no free port in 20000-29999 near $((20000 + $1 % 10000))"
}

# wait_port PORT SECONDS PID: until something listens on PORT; fails early if PID dies.
wait_port() {
  local port="$1" seconds="$2" pid="$3" i
  for ((i = 0; i < seconds * 10; i++)); do
    port_open "$port" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_dynalite PORT LOGFILE [dynalite options...]: sets DYNALITE_PID (also its process group).
# infra/dynalite/server.js is dynalite with TransactWriteItems added (the bridge writes a status
# change and its counters in one transaction).
start_dynalite() {
  local port="$1" logfile="$2"
  shift 2
  setsid node "$ROOT/infra/dynalite/server.js" --host 127.0.0.1 --port "$port" "$@" \
    >"$logfile" 2>&1 &
  DYNALITE_PID=$!
  wait_port "$port" 30 "$DYNALITE_PID" || die "dynalite did not start on port $port (log: $logfile)"
}

# Stops a process group started with setsid: TERM, then KILL after a grace period.
stop_group() {
  local pgid="$1" i
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 -- "-$pgid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
}
