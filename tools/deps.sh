#!/usr/bin/env sh
# The optional system packages some tests run for real. `make test` calls this first; it never
# fails: a package it cannot install leaves a hint, and its tests skip saying what to install.
#
#   nginx-light  nginx, for the node-side recipes (tests/integration/test_nginx.py)
#   systemd      systemd-analyze, to verify the shipped units (deploy/systemd/)
#   postgresql   initdb and pg_ctl; the tests start a cluster of their own on a free port
#                (the one the package may create and start on 5432 is neither used nor touched)
#   strace       to watch OpenSSL's generators in the SnapStart test
#   softhsm2     a PKCS#11 token for the CA key behind the signer seam
#                (tests/integration/test_pkcs11_signer.py, benchmarks/signers.py)
#   awscli       the AWS CLI, to run docs/aws.md's shell recipes as written, against moto
#                (deploy/aws/outbox-upgrade-check.sh)
#
# Installed only as root with apt-get (CI containers, a fresh Debian machine). Another apt or
# dpkg run holding the lock is waited for, up to five minutes, rather than failing.
set -u

missing=""
have() { command -v "$1" >/dev/null 2>&1 || test -x "/usr/sbin/$1"; }
have nginx || missing="$missing nginx-light"
have systemd-analyze || missing="$missing systemd"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
have strace || missing="$missing strace"
have softhsm2-util || missing="$missing softhsm2"
have aws || missing="$missing awscli"

[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "hint: install$missing (apt-get install$missing) to run the tests that need them;" \
        "they skip meanwhile"
    exit 0
fi

wait_s=300
apt() {
    # DPkg::Lock::Timeout makes apt wait for dpkg's lock; `apt-get update` takes the lists
    # lock, which it does not wait for, so every call is retried until the deadline.
    deadline=$(( $(date +%s) + wait_s ))
    while ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$wait_s" -qq "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            return 1
        fi
        echo "deps: apt-get $1 failed (another apt or dpkg running?); retrying in 5 s"
        sleep 5
    done
}

apt update || { echo "hint: apt-get update failed; the tests that need$missing skip"; exit 0; }
# One package at a time: a package this distribution lacks (awscli is not in every release)
# leaves the others installed.
failed=""
for package in $missing; do
    apt install -y --no-install-recommends "$package" || failed="$failed $package"
done
[ -z "$failed" ] || echo "hint: could not install$failed (apt-get failed); the tests that need them skip"
exit 0
