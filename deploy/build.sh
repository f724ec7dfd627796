#!/usr/bin/env sh
# Build the Lambda code directory (build/lambda) that deploy/template.yaml points at.
#
# cryptography is a compiled extension: pip must fetch the manylinux wheels for the Lambda
# runtime (python3.12, x86_64), not the wheels of the machine that runs this script.
# boto3 is not packaged: the Lambda runtime provides it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/lambda"
python=${PYTHON:-python3}

rm -rf "$out"
mkdir -p "$out"
"$python" -m pip install --quiet --target "$out" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --python-version 3.12 --only-binary=:all: \
    "cryptography>=43" "PyJWT>=2.9"
"$python" -m pip install --quiet --target "$out" --no-deps "$root"
echo "built $out"
