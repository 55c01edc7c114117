#!/usr/bin/env bash
# The one command that runs mewld's tests on a fresh machine: installs what
# the tests need when it is missing (redis-server for the engine's tests,
# tmux for the console's end-to-end test, openssl for a certificate for
# the TLS test, systemd-analyze to check the shipped units, python3 with
# redis-py for the Python example bot's test), then runs `cargo test`.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh --test lifecycle`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# redis-cli speaks for the shell bots of tests/cluster_channels.rs.
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# systemd-analyze checks the shipped units (tests/systemd.rs).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

# examples/python-bot needs redis-py 4.2 or later (redis.asyncio) in the
# python3 on PATH, the one mewld runs it with: Debian's python3-redis for
# Debian's own python3 (whose pip refuses to install), pip for any other.
python_has_redis() { python3 -c 'import redis.asyncio' >/dev/null 2>&1; }
debians_python() {
  command -v dpkg >/dev/null 2>&1 &&
    dpkg -S "$(readlink -f "$(command -v python3)")" >/dev/null 2>&1
}
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-redis)
elif ! python_has_redis && debians_python; then
  missing+=(python3-redis)
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else
    echo "tests/run.sh: need root to install ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    # Homebrew names the server's (and redis-cli's) package `redis`, and python3's `python`;
    # redis-py comes from pip, below.
    brew_names=()
    for package in "${missing[@]}"; do
      case "$package" in
        redis-server | redis-tools) brew_names+=(redis) ;;
        python3) brew_names+=(python) ;;
        python3-redis) ;;
        *) brew_names+=("$package") ;;
      esac
    done
    brew install "${brew_names[@]}"
  else
    echo "tests/run.sh: cannot install ${missing[*]} here (no apt-get, no brew)." >&2
    echo "Install them with your package manager (the server package is often" >&2
    echo "called redis or redis-server), then run this again." >&2
    exit 1
  fi
fi

# Not Debian's python3, or a python3-redis too old for redis.asyncio.
if ! python_has_redis; then
  echo "tests/run.sh: installing redis-py for $(command -v python3) with pip"
  if ! python3 -m pip install --quiet -r examples/python-bot/requirements.txt || ! python_has_redis; then
    echo "tests/run.sh: could not install redis-py 4.2 or later for python3;" >&2
    echo "install it (examples/python-bot/requirements.txt), then run this again." >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "tests/run.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi

# The end-to-end tests mostly wait on real timers (pings every second,
# processes starting), not on the CPU: four at a time on two cores halves
# the wall time. Set RUST_TEST_THREADS to choose otherwise.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
exec cargo test "$@"
