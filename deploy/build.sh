#!/usr/bin/env sh
# Build the Lambda code directory (build/lambda) that deploy/template.yaml points at.
#
# Everything comes from requirements/lambda.txt: exact versions with hashes (`make lock`),
# boto3 and botocore included, so the function runs the SDK it was tested with rather than
# whatever the Lambda runtime ships that week. cryptography is a compiled extension: pip must
# fetch the manylinux wheels for the Lambda runtime (python3.12, x86_64), not the wheels of
# the machine that runs this script. nodecert itself is pure Python and is copied as it is.
#
# LAMBDA_PYTHON (default 3.12, the template's runtime) picks the interpreter the wheels are
# for; the rehearsal builds for its own interpreter and runs every function from this
# directory (tests/rehearsal/package.py). LAMBDA_OUT (default build/lambda) is where it goes.
#
# CA_CHAIN: the PEM chain of the issuing CA, then its root (one certificate when the CA is
# its own root). IssuingCA KMS needs it: the local CA whose issuing key is the stack's KMS
# key (`cat ca.crt root.crt` of the home `nodecert ca init` made; docs/aws.md, "The issuing
# key in KMS"). The PrivateCA shapes may have it: the truststore file `nodecert aws
# truststore` wrote, so that the node authorizer (NodeCAChainPackaged=Yes) never asks PCA.
# It is packaged as nodecert-ca.pem, which the template's NODECERT_CA_BUNDLE names.
# Certificates only: no key.
#
# Bytecode: /var/task is read-only, so a module without a .pyc of the runtime's version is
# compiled from source on every cold start (and the result thrown away). The package is
# compiled here by an interpreter of version LAMBDA_PYTHON (PYTHON itself when it is one,
# else python$LAMBDA_PYTHON from PATH), with unchecked hashes: a .pyc that ignores its
# source's mtime, which a zip archive keeps only to two seconds. Without such an
# interpreter the package ships no bytecode, and this script says what that costs.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${LAMBDA_OUT:-"$root/build/lambda"}
python=${PYTHON:-python3}
lambda_python=${LAMBDA_PYTHON:-3.12}

rm -rf "$out"
mkdir -p "$out"
"$python" -m pip install --quiet --target "$out" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --python-version "$lambda_python" --only-binary=:all: \
    --require-hashes --no-deps --no-compile -r "$root/requirements/lambda.txt"
cp -R "$root/src/nodecert" "$out/nodecert"
# botocore's service models: only those nodecert makes clients for (the services of
# nodecert.support.awsclients.make_client) and those botocore's own credential and token providers
# may call (sts, sso, sso-oidc, signin). The other 400-odd, about half the package, would
# be uploaded, unpacked into every new execution environment and listed by each client
# made, for nothing (tests/integration/test_lambda_package.py keeps the list honest).
botocore_services=" acm-pca dynamodb kms sts sso sso-oidc signin "
for model in "$out"/botocore/data/*/; do
    [ -d "$model" ] || continue
    case "$botocore_services" in
        *" $(basename "$model") "*) ;;
        *) rm -rf "$model" ;;
    esac
done
# endpoints.json (1.2 MB, parsed by every cold start's first client) keeps the same
# services' entries in every partition, and the partitions themselves, unchanged.
if [ -f "$out/botocore/data/endpoints.json" ]; then
    "$python" - "$out/botocore/data/endpoints.json" $botocore_services <<'TRIM'
import json, sys
path, keep = sys.argv[1], set(sys.argv[2:])
with open(path) as file:
    endpoints = json.load(file)
for partition in endpoints["partitions"]:
    partition["services"] = {k: v for k, v in partition["services"].items() if k in keep}
with open(path, "w") as file:
    json.dump(endpoints, file, separators=(",", ":"))
TRIM
fi
# Each kept service model (service-2.json.gz) without the documentation of its operations
# and shapes, written as plain JSON, which botocore's loader tries first: a client's first
# use decompresses and parses the whole model, and the prose is four fifths of it
# (DynamoDB's: 556 KB, 15 ms of a cold start here, against 113 KB and 4 ms). botocore
# reads that prose only to write docstrings and documentation (``help(client.put_item)``),
# and with .get(): the model's other keys are kept as they are, the client context
# parameters' documentation included (botocore indexes it).
"$python" - "$out/botocore/data" <<'STRIP'
import gzip, json, os, sys
from pathlib import Path
def prose_free(value):
    if isinstance(value, dict):
        # Prose is a string; a member that happens to be named "documentation" is not.
        return {
            k: prose_free(v)
            for k, v in value.items()
            if not (k == "documentation" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [prose_free(v) for v in value]
    return value
for packed in sorted(Path(sys.argv[1]).glob("*/*/service-2.json.gz")):
    with gzip.open(packed, "rt", encoding="utf-8") as file:
        model = json.load(file)
    for part in ("operations", "shapes"):
        model[part] = prose_free(model.get(part, {}))
    plain = packed.with_suffix("")
    plain.write_text(json.dumps(model, separators=(",", ":")), encoding="utf-8")
    os.remove(packed)
STRIP
if [ -n "${CA_CHAIN:-}" ]; then
    if grep -q "PRIVATE KEY" "$CA_CHAIN"; then
        echo "CA_CHAIN: $CA_CHAIN holds a private key; package certificates only" >&2
        exit 1
    fi
    count=$(grep -c -- "-----BEGIN CERTIFICATE-----" "$CA_CHAIN" || true)
    if [ "$count" != 1 ] && [ "$count" != 2 ]; then
        echo "CA_CHAIN: $CA_CHAIN must hold the issuing CA then its root (one certificate" \
            "when the CA is its own root), not $count" >&2
        exit 1
    fi
    cp "$CA_CHAIN" "$out/nodecert-ca.pem"
fi
find "$out/nodecert" -name __pycache__ -prune -exec rm -rf {} +
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
compiler=
for candidate in "$python" "python$lambda_python"; do
    if [ "$(version "$candidate")" = "$lambda_python" ]; then
        compiler=$candidate
        break
    fi
done
if [ -n "$compiler" ]; then
    "$compiler" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$out" >/dev/null
else
    echo "note: no python$lambda_python here, so the package has no bytecode: every cold" \
        "start compiles the modules it imports (hundreds of ms). Build where" \
        "python$lambda_python is on PATH (or PYTHON=...) to ship it." >&2
fi
echo "built $out"
