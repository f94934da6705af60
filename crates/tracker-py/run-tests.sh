#!/usr/bin/env bash
# Builds the tracker_store wheel, installs it from the wheel file into a Rasa 3.6.21
# virtualenv, and runs the package's tests (pytest) against real Rasa and the test servers.
#
#   RASA_VENV           the virtualenv (default /var/tmp/rasa-3.6.21); created with pyenv's
#                       Python 3.10 and `pip install rasa==3.6.21` when it has no `rasa`
#   TRACKER_PY_PROFILE  cargo profile of the wheel: dev (default, quick to build) or release
#   CARGO_TARGET_DIR    cargo's target directory (default: the repository's target/)
#   TRACKER_TEST_*_URL  the test servers (PostgreSQL, MySQL/MariaDB, Redis, MongoDB, DynamoDB); when unset,
#                       /var/tmp/test-env.sh is sourced if it exists. With CI=true a missing
#                       server fails the tests that need it instead of skipping them.
#
# Extra arguments go to pytest, e.g. `run-tests.sh -k sqlite -x`.
set -euo pipefail

crate="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository="$(cd "$crate/../.." && pwd)"
venv="${RASA_VENV:-/var/tmp/rasa-3.6.21}"
profile="${TRACKER_PY_PROFILE:-dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repository/target}"
started=$(date +%s)

step() { printf '\n== %s (%ds)\n' "$1" "$(($(date +%s) - started))"; }

if [[ ! -x "$venv/bin/rasa" ]]; then
    step "creating $venv with Rasa 3.6.21"
    python310="$(pyenv root)/versions/$(pyenv versions --bare | grep -E '^3\.10(\.|$)' | tail -1)/bin/python"
    [[ -x "$python310" ]] || { echo "pyenv has no Python 3.10 (pyenv install 3.10)" >&2; exit 1; }
    "$python310" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade 'pip<25'
    "$venv/bin/pip" install --quiet 'rasa==3.6.21'
fi
python="$venv/bin/python"

# Build and test tools; packaging stays at Rasa 3.6's pin (pytest 8 would upgrade it).
if ! "$python" -c 'import maturin' 2>/dev/null || ! "$python" -c 'import pytest' 2>/dev/null; then
    step "installing maturin and pytest into $venv"
    "$venv/bin/pip" install --quiet 'maturin>=1.7,<2' 'pytest>=7,<8' 'packaging>=20,<21'
fi

# One interpreter for every build of the crate, so that cargo does not rebuild PyO3.
export PYO3_PYTHON="$python"

step "cargo test (Rust unit tests of tracker-py)"
# The test binary links libpython (the wheel does not); find it where the interpreter has it.
libdir="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test --quiet --manifest-path "$crate/Cargo.toml"

step "building the wheel (profile $profile)"
wheels="$CARGO_TARGET_DIR/tracker-py-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --quiet --manifest-path "$crate/Cargo.toml" --profile "$profile" \
    --interpreter "$python" --out "$wheels"

step "installing the wheel from its file"
"$venv/bin/pip" install --quiet --force-reinstall --no-deps "$wheels"/tracker_store-*.whl

step "building tracker-cli"
cargo build --quiet --manifest-path "$repository/Cargo.toml" -p tracker-cli
export TRACKER_CLI="$CARGO_TARGET_DIR/debug/tracker"

if [[ -z "${TRACKER_TEST_POSTGRES_URL:-}" && -f /var/tmp/test-env.sh ]]; then
    set -a
    # shellcheck disable=SC1091
    source /var/tmp/test-env.sh
    set +a
fi

step "pytest"
cd "$crate"
status=0
"$python" -m pytest tests -p no:cacheprovider -W ignore::DeprecationWarning "$@" || status=$?
step "done, exit status $status"
exit "$status"
