#!/usr/bin/env sh
# Install nodecert from a checkout (or release tarball) into a virtualenv of its own, from a
# hashed lock, and link the command where the systemd units in deploy/systemd/ call it.
# SET=node (the default) is what a node needs: nodecert, cryptography and PyJWT
# (requirements/node.txt). SET=service adds what `nodecert serve` needs: FastAPI and uvicorn
# (requirements/service.txt). As root for the default places:
#
#   sh deploy/install.sh                  # a node: /opt/nodecert, /usr/local/bin/nodecert
#   SET=service sh deploy/install.sh      # the service, same places
#   PREFIX=$HOME/.local/nodecert LINK=$HOME/.local/bin/nodecert sh deploy/install.sh
#
# A virtualenv rather than `pip install` into the system Python: Debian 12 and Ubuntu 23.04
# and later refuse that (PEP 668, "externally-managed-environment"). pipx works as well
# (`pipx install .` from the checkout), but installs whatever versions are newest that day.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
set_name=${SET:-node}
case "$set_name" in
    node | service) ;;
    *) echo "install.sh: SET must be node or service, not '$set_name'" >&2; exit 2 ;;
esac
prefix=${PREFIX:-/opt/nodecert}
link=${LINK:-/usr/local/bin/nodecert}
python=${PYTHON:-python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# nodecert's own wheel, built by the pinned build back end in a throwaway virtualenv, so the
# node's environment holds nothing but what runs.
"$python" -m venv "$work/build"
"$work/build/bin/python" -m pip install --quiet --require-hashes --no-deps \
    -r "$root/requirements/build.txt"
"$work/build/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation \
    -w "$work/dist" "$root"

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --require-hashes --no-deps \
    -r "$root/requirements/$set_name.txt"
"$prefix/bin/python" -m pip install --quiet --no-deps --force-reinstall "$work"/dist/nodecert-*.whl

mkdir -p "$(dirname "$link")"
ln -sf "$prefix/bin/nodecert" "$link"
echo "installed $("$link" --version) ($set_name set) in $prefix; $link -> $prefix/bin/nodecert"
