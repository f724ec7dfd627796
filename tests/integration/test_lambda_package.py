"""The Lambda code package: a cold start compiles nothing and lists only the models it uses.

``/var/task`` is read-only on Lambda, so a module without a ``.pyc`` of the runtime's
version is compiled from source on every cold start and the result thrown away.
``deploy/build.sh`` compiles the package with unchecked hashes (a zip keeps mtimes only
to two seconds, which would make timestamp-checked ``.pyc`` files stale). The package is
the one the rehearsal runs every function from (``tests/rehearsal/package.py``, built for
this interpreter).

botocore's service models are cut to the services nodecert makes clients for and those
botocore's credential providers call; every client ``make_client`` can make is made here
from the package.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import typing
from pathlib import Path

from nodecert.support.awsclients import make_client
from tests.rehearsal.package import lambda_package

# PEP 552: the pyc header's flags word; bit 0 hash-based, bit 1 check the source.
UNCHECKED_HASH = 0b01

# The handler module, imported in a fresh `python -S` with an audit hook that records
# every compile() of a file under the package: what importing from source does.
IMPORT_AND_COUNT = """\
import json, sys
package = sys.argv[1]
compiled = []
def audit(event, args):
    if event == "compile" and isinstance(args[1], str) and args[1].startswith(package):
        compiled.append(args[1])
sys.addaudithook(audit)
import nodecert.aws.handler, nodecert.aws.authorizer, nodecert.aws.sweep
import boto3, botocore.session, cryptography.x509, jwt
print(json.dumps(compiled))
"""


def _flags(pyc: Path) -> int:
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_every_module_of_the_package_has_unchecked_hash_bytecode():
    package = lambda_package()
    sources = [
        *sorted((package / "nodecert").rglob("*.py")),
        package / "botocore" / "client.py",
        package / "boto3" / "session.py",
        package / "cryptography" / "x509" / "base.py",
    ]
    missing, checked = [], []
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        if not pyc.is_file():
            missing.append(str(source.relative_to(package)))
        elif _flags(pyc) != UNCHECKED_HASH:
            checked.append(str(source.relative_to(package)))
    assert len(sources) > 50
    assert not missing, f"no bytecode for {missing[:5]}"
    assert not checked, f"bytecode checked against the source (mtime or hash): {checked[:5]}"


def _last_json_line(argv: list[str], env: dict[str, str], cwd: Path) -> typing.Any:
    """Run ``argv`` in a bare environment (``env`` alone) and parse its last line of output."""
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_handlers_from_the_package_compiles_nothing(tmp_path):
    package = lambda_package()
    compiled = _last_json_line(
        [sys.executable, "-S", "-c", IMPORT_AND_COUNT, str(package)],
        {"PYTHONPATH": str(package), "PYTHONDONTWRITEBYTECODE": "1"},
        tmp_path,
    )
    assert compiled == []


def test_the_audit_hook_sees_a_module_compiled_from_source(tmp_path):
    # The check above cannot pass by not looking: a module without bytecode is reported.
    (tmp_path / "fresh_module.py").write_text("VALUE = 1\n")
    code = IMPORT_AND_COUNT.replace(
        "import nodecert.aws.handler", "import fresh_module, nodecert.aws.handler"
    )
    compiled = _last_json_line(
        [sys.executable, "-S", "-c", code, str(tmp_path)],
        {"PYTHONPATH": f"{tmp_path}:{lambda_package()}", "PYTHONDONTWRITEBYTECODE": "1"},
        tmp_path,
    )
    assert compiled == [str(tmp_path / "fresh_module.py")]


# Every client make_client can make, from the package, in a fresh `python -S`.
MAKE_EVERY_CLIENT = """\
import json, sys
from nodecert.support.awsclients import make_client
kwargs = {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}
made = [make_client(s, **kwargs).meta.service_model.service_name for s in sys.argv[1:]]
import botocore.session
session = botocore.session.get_session()
for name in ("sts", "sso", "sso-oidc", "signin"):  # botocore's credential providers
    session.create_client(name, region_name="eu-west-1")
print(json.dumps(sorted(session.get_available_services())))
"""


def test_the_package_keeps_the_model_of_every_client_nodecert_makes(tmp_path):
    package = lambda_package()
    annotation = typing.get_type_hints(make_client)["service"]
    services = sorted(typing.get_args(annotation))
    assert services == ["acm-pca", "dynamodb", "kms"]
    kept = _last_json_line(
        [sys.executable, "-S", "-c", MAKE_EVERY_CLIENT, *services],
        {
            "PYTHONPATH": str(package),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
        tmp_path,
    )
    assert kept == sorted([*services, "signin", "sso", "sso-oidc", "sts"])


# Where each kept service's client sends its calls, per partition's Region, no endpoint_url.
RESOLVE = """\
import json, sys
import botocore.session
session = botocore.session.get_session()
urls = {}
for service in sys.argv[1:]:
    for region in ("eu-west-1", "us-gov-west-1", "cn-north-1", "us-iso-east-1"):
        client = session.create_client(service, region_name=region)
        urls[f"{service} {region}"] = client.meta.endpoint_url
print(json.dumps(urls))
"""


def _resolve(pythonpath: str | None, tmp_path: Path, services: list[str]) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    argv = [sys.executable, "-c", RESOLVE, *services]
    if pythonpath is not None:  # The package alone, as Lambda runs it.
        env["PYTHONPATH"] = pythonpath
        argv.insert(1, "-S")
    resolved: dict[str, str] = _last_json_line(argv, env, tmp_path)
    return resolved


def test_the_cut_endpoints_file_resolves_every_kept_service_as_botocore_does(tmp_path):
    package = lambda_package()
    endpoints = json.loads((package / "botocore" / "data" / "endpoints.json").read_text())
    kept = sorted({"acm-pca", "dynamodb", "kms", "signin", "sso", "sso-oidc", "sts"})
    for partition in endpoints["partitions"]:
        assert set(partition["services"]) <= set(kept), partition["partition"]
    assert {"aws", "aws-us-gov", "aws-cn"} <= {p["partition"] for p in endpoints["partitions"]}
    # The same botocore, with its whole endpoints.json (this virtualenv's), agrees.
    assert _resolve(str(package), tmp_path, kept) == _resolve(None, tmp_path, kept)


def _prose(value: object, path: str = "") -> list[str]:
    """Where ``value`` holds documentation prose (a string under a "documentation" key)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "documentation" and isinstance(item, str):
                found.append(path)
            found.extend(_prose(item, f"{path}/{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_prose(item, f"{path}/{index}"))
    return found


def _without_prose(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: _without_prose(item)
            for key, item in value.items()
            if not (key == "documentation" and isinstance(item, str))
        }
    if isinstance(value, list):
        return [_without_prose(item) for item in value]
    return value


def test_the_packaged_service_models_are_plain_json_without_prose_and_nothing_else_lost():
    import botocore.loaders

    package = lambda_package()
    data = package / "botocore" / "data"
    assert not sorted(data.glob("*/*/service-2.json.gz")), "the compressed model would be read"
    models = sorted(data.glob("*/*/service-2.json"))
    assert {m.parent.parent.name for m in models} >= {"acm-pca", "dynamodb", "kms"}
    # This virtualenv's botocore (the same version as the package's) has the full models.
    full = botocore.loaders.create_loader()
    for path in models:
        service, version = path.parent.parent.name, path.parent.name
        packaged = json.loads(path.read_text())
        original = full.load_service_model(service, "service-2", api_version=version)
        assert _prose(original["shapes"]), f"{service}: the check below would see nothing"
        assert not _prose(packaged["operations"]) and not _prose(packaged["shapes"]), service
        # Every operation, shape, member and trait is still there; only the prose went.
        assert packaged["operations"] == _without_prose(original["operations"]), service
        assert packaged["shapes"] == _without_prose(original["shapes"]), service
        assert {k: v for k, v in packaged.items() if k not in ("operations", "shapes")} == {
            k: v for k, v in original.items() if k not in ("operations", "shapes")
        }, service
