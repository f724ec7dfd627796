#!/usr/bin/env sh
# Build the Lambda code directory (build/lambda) that deploy/template.yaml points at.
#
# Everything comes from requirements/lambda.txt: exact versions with hashes (`make lock`),
# boto3 and botocore included, so the function runs the SDK it was tested with rather than
# whatever the Lambda runtime ships that week. cryptography is a compiled extension: pip must
# fetch the manylinux wheels for the Lambda runtime (python3.12, x86_64), not the wheels of
# the machine that runs this script. nodecert itself is pure Python and is copied as it is.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/lambda"
python=${PYTHON:-python3}

rm -rf "$out"
mkdir -p "$out"
"$python" -m pip install --quiet --target "$out" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --python-version 3.12 --only-binary=:all: \
    --require-hashes --no-deps -r "$root/requirements/lambda.txt"
cp -R "$root/src/nodecert" "$out/nodecert"
find "$out/nodecert" -name __pycache__ -prune -exec rm -rf {} +
echo "built $out"
