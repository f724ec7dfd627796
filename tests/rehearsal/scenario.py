"""The whole AWS system on one machine: deploy/template.yaml, rehearsed end to end.

:func:`rehearse` "deploys" a (possibly altered) template into moto (tests/rehearsal/stack.py)
in the two phases docs/aws.md describes (the issuance half alone; ``nodecert aws
truststore``; the stack again with the node half's parameters and the truststore version),
puts the API Gateway emulation (tests/rehearsal/apigw.py) in front of it and the node
backend recipe (real nginx, tests/rehearsal/backend.py) behind it, shows that the backend
refuses whoever is not API Gateway, and walks the story: users sign in to Cognito, an
admin registers nodes with their owners' ``sub``, a user gets a certificate through
``POST /generate-cert``, calls its node through the mutual-TLS domain (allowed), another
node (denied), revokes (denied), and after a transfer the old owner is denied. Every step
that does not go as AWS would answer raises :class:`RehearsalError` naming the step.

What moto does not model, and what this does about it: moto's ACM PCA signs with the CA's
key and copies the CSR's subject and subjectAltName, but ignores ``ApiPassthrough`` and the
fixed extensions of the two ``*_APIPassthrough`` templates nodecert uses, so its
certificates would carry neither an authority key identifier nor the clientAuth EKU, and
the node-side check would (rightly) refuse them. :func:`pca_templates` teaches moto's CA
those templates' fixed extensions as AWS documents them (BasicConstraints CA:FALSE,
AKI, SKI, KeyUsage, EKU clientAuth; serverAuth too for the node-server template). The
identity still comes from nodecert: its CSR carries the same subject and SAN as its
``ApiPassthrough``. Validity is moto's own (it ignores ``Validity``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rehearsal.apigw import Gateway, Reply
from tests.rehearsal.backend import NginxBackend
from tests.rehearsal.domain import DomainListener
from tests.rehearsal.package import build, lambda_package
from tests.rehearsal.stack import ACCOUNT, REGION, ClientCertificate, Stack
from tests.rehearsal.template import sam_translate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "aws.md"
DOMAIN = "nodes.rehearsal.test"
PASSWORD = "Rehearsal-Passw0rd"
CLIENT_AUTH = "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1"
SERVER_AND_CLIENT = "arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1"
SUBORDINATE = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"


def documented_truststore_command() -> str:
    """The ``nodecert aws truststore`` line of docs/aws.md's deploy recipe."""
    (line,) = [
        line
        for line in DOCS.read_text().splitlines()
        if line.startswith("nodecert aws truststore ")
    ]
    return line.split("#", 1)[0].strip()


def documented_chain_commands() -> tuple[str, str]:
    """docs/aws.md's two lines that package the truststore for the node authorizer."""
    lines = DOCS.read_text().splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.startswith("aws s3 cp ")]
    copy, package = (line.split("#", 1)[0].strip() for line in lines[index : index + 2])
    assert package.endswith("deploy/build.sh"), package
    return copy, package


class RehearsalError(AssertionError):
    """A step of the rehearsal did not behave as the deployed system must."""


@contextlib.contextmanager
def pca_templates() -> Iterator[None]:
    """moto's CA, taught the fixed extensions of nodecert's two passthrough templates and
    of the subordinate CA template (``IssuingCA: PrivateCATwoTier``).

    moto 5 gives a ``SubordinateCACertificate_PathLen0/V1`` certificate no extension but
    the CSR's names: not a CA, so no chain through it would verify. Taught here: a CA of
    path length 0, as the template's name says (BasicConstraints CA:TRUE, pathlen 0,
    critical; KeyUsage keyCertSign, cRLSign, digitalSignature, critical; SKI; AKI). What
    PCA itself writes is for a real account to show (docs/aws.md).
    """
    from moto.acmpca import models

    original = models.CertificateAuthority._x509_extensions

    def extensions(self: Any, csr: Any, template_arn: str | None) -> Any:
        if template_arn == SUBORDINATE:
            usage = dict.fromkeys(
                (
                    "content_commitment",
                    "key_encipherment",
                    "data_encipherment",
                    "key_agreement",
                    "encipher_only",
                    "decipher_only",
                ),
                False,
            )
            return [
                (x509.BasicConstraints(ca=True, path_length=0), True),
                (
                    x509.KeyUsage(
                        digital_signature=True, key_cert_sign=True, crl_sign=True, **usage
                    ),
                    True,
                ),
                (x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), False),
                (
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                    False,
                ),
            ]
        if template_arn not in (CLIENT_AUTH, SERVER_AND_CLIENT):
            return original(self, csr, template_arn)
        fixed = original(self, csr, "arn:aws:acm-pca:::template/EndEntityCertificate/V1")
        if template_arn == CLIENT_AUTH:
            fixed = [
                (x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
                if isinstance(value, x509.ExtendedKeyUsage)
                else (value, critical)
                for value, critical in fixed
            ]
        return fixed

    models.CertificateAuthority._x509_extensions = extensions
    try:
        yield
    finally:
        models.CertificateAuthority._x509_extensions = original


@dataclass
class World:
    """Everything one rehearsal made; closed by :func:`rehearse`."""

    stack: Stack
    gateway: Gateway
    workdir: Path
    server_ca: Any
    backend: NginxBackend
    listener: DomainListener | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    subs: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def api(
        self,
        method: str,
        path: str,
        user: str | None,
        body: Any = None,
        extra: dict[str, str] | None = None,
    ) -> Reply:
        headers = {"Content-Type": "application/json", "User-Agent": "rehearsal", **(extra or {})}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        raw = b"" if body is None else json.dumps(body).encode()
        return self.gateway.request("Api", method, path, headers=headers, body=raw)

    def _context(self, certificate: tuple[str, str] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.server_ca.cert_pem.bytes().decode())
        if certificate is not None:
            cert_file = self.workdir / "client.crt"
            key_file = self.workdir / "client.key"
            cert_file.write_text(certificate[0])
            key_file.write_text(certificate[1])
            key_file.chmod(0o600)
            context.load_cert_chain(cert_file, key_file)
        return context

    def direct_backend_call(self, certificate: tuple[str, str] | None, path: str) -> int:
        """GET ``path`` on the node backend itself, with forged identity headers: the status."""
        raw = socket.create_connection(("127.0.0.1", self.backend.port), timeout=60)
        connection = HTTPConnection("127.0.0.1")
        connection.sock = self._context(certificate).wrap_socket(raw, server_hostname="127.0.0.1")
        forged = {"X-Nodecert-User": "alice", "X-Nodecert-Node": "n1", "User-Agent": "mallory"}
        try:
            connection.request("GET", path, headers=forged)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        return response.status

    def node_call(self, certificate: tuple[str, str] | None, path: str) -> tuple[int, Any]:
        """GET ``path`` on the mutual-TLS domain; (status, JSON body)."""
        assert self.listener is not None
        context = self._context(certificate)
        raw = socket.create_connection(("127.0.0.1", self.listener.port), timeout=60)
        # SNI and the server name check use the domain, as a client of AWS would.
        connection = HTTPConnection(DOMAIN)
        connection.sock = context.wrap_socket(raw, server_hostname=DOMAIN)
        try:
            connection.request("GET", path, headers={"User-Agent": "rehearsal"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body


@contextlib.contextmanager
def step(world: World, name: str) -> Iterator[None]:
    try:
        yield
    except RehearsalError:
        raise
    except Exception as exc:
        raise RehearsalError(
            f"step {name!r}: {type(exc).__name__}: {exc}\n{world.gateway.logs()}"
        ) from exc
    world.steps.append(name)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


Story = Callable[["World", contextlib.ExitStack], None]


def rehearse(
    template: dict[str, Any],
    clients: Any,
    endpoint: str,
    story: Story | None = None,
    parameters: dict[str, str] | None = None,
) -> list[str]:
    """Deploy ``template`` into moto and walk the story; the steps passed, in order.

    ``story`` is what happens once the mutual-TLS domain is up (by default this module's:
    users, nodes, certificates, calls, revocation, transfer). ``parameters`` are given to
    both deploys (``IssuingCA``, say).

    Raises:
        RehearsalError: a step went otherwise than the deployed system must behave.
    """
    import trustme

    with contextlib.ExitStack() as stack:
        stack.enter_context(pca_templates())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearsal-")))
        # One CA for the domain's certificate and the backend's: what API Gateway's
        # clients and API Gateway itself trust (public CAs, in an account).
        public_ca = trustme.CA()
        (workdir / "backend").mkdir()
        backend = NginxBackend(workdir / "backend", public_ca, ["n1", "n2", "node-1"])
        stack.callback(backend.close)
        translated = sam_translate(template)
        # The first deploy: the issuance half, none of the node half's parameters.
        deployed = Stack(translated, dict(parameters or {}), clients).deploy()
        gateway = Gateway(deployed, endpoint, public_ca.cert_pem.bytes().decode())
        stack.callback(gateway.close)
        world = World(deployed, gateway, workdir, public_ca, backend)
        _deploy(world, stack)
        (story or _walk)(world, stack)
        return world.steps


def _deploy(world: World, stack: contextlib.ExitStack) -> None:
    deployed = world.stack
    with step(world, "first deploy: the issuance half alone"):
        expect(not deployed.of_type("AWS::ApiGateway::DomainName"), "domain before truststore")
        expect("NodeApi" not in world.gateway.apis, "a node API without a backend")
        reply = world.api("GET", "/healthz", None)
        expect(reply.status == 200, f"healthz: {reply.status} {reply.body!r}")
        # The function ran from the built package (deploy/build.sh), not from src/.
        log = world.gateway.containers["NodecertAdminFunction"].log.read_text()
        origin = f"container: nodecert from {lambda_package()}/nodecert/__init__.py"
        expect(origin in log, f"the function's code came from elsewhere: {log[-500:]}")

    # The operator's shell, with the stack's outputs.
    shell_env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "CA_ARN": deployed.physical["CertificateAuthority"],
        "TRUSTSTORE_BUCKET": deployed.physical["TruststoreBucket"],
        "AWS_ENDPOINT_URL": world.gateway.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    with step(world, "nodecert aws truststore"):
        # The command exactly as docs/aws.md writes it.
        result = subprocess.run(
            documented_truststore_command(),
            shell=True,
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
        version = re.search(r"^version: (\S+)$", result.stdout, re.M)
        expect(version is not None, result.stdout)
        assert version is not None

    if deployed.parameters.get("NodeCAChainPackaged") == "Yes":
        with step(world, "the truststore packaged for the node authorizer"):
            # docs/aws.md's two lines as written: the package of the second deploy.
            copy, package = documented_chain_commands()
            result = subprocess.run(
                copy,
                shell=True,
                env=shell_env,
                cwd=world.workdir,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            expect(result.returncode == 0, f"{copy}: exit {result.returncode}: {result.stderr}")
            out = build(world.workdir / "lambda", package, cwd=world.workdir)
            packaged = (out / "nodecert-ca.pem").read_text()
            expect("BEGIN CERTIFICATE" in packaged, f"packaged chain: {packaged[:200]!r}")
            world.gateway.package = out

    with step(world, "second deploy adds the node half and its mutual-TLS domain"):
        deployed.parameters.update(
            {
                "NodeDomainName": DOMAIN,
                "NodeDomainCertificateArn": f"arn:aws:acm:{REGION}:123456789012:certificate/r",
                "NodeBackendUrl": world.backend.url,
                "NodeTruststoreVersion": version[1],
            }
        )
        deployed.deploy()
        world.gateway.reload()
        (domain,) = deployed.of_type("AWS::ApiGateway::DomainName")
        properties = deployed.resources[domain]["Properties"]
        mtls = deployed.resolve(properties["MutualTlsAuthentication"])
        uri = re.fullmatch(r"s3://([^/]+)/(.+)", mtls["TruststoreUri"])
        expect(uri is not None, f"truststore URI {mtls['TruststoreUri']}")
        assert uri is not None
        truststore = (
            world.stack.clients("s3")
            .get_object(Bucket=uri[1], Key=uri[2], VersionId=mtls["TruststoreVersion"])["Body"]
            .read()
            .decode()
        )
        server = world.server_ca.issue_cert(DOMAIN)
        chain, key = world.workdir / "server.pem", world.workdir / "server.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(key))
        world.listener = DomainListener(
            world.gateway, deployed, domain, truststore, (str(chain), str(key))
        )
        stack.callback(world.listener.close)
        # The backend recipe, with the certificate of the node stage (`aws apigateway
        # get-client-certificate`); a stage without one leaves the backend without it.
        stage = deployed.resources[deployed.stage_resource("NodeApi")]["Properties"]
        identifier = deployed.resolve(stage.get("ClientCertificateId"))
        certificate = deployed.client_certificates.get(identifier) if identifier else None
        if certificate is None:
            certificate = ClientCertificate.generate("not the stage's certificate")
        world.backend.start(certificate.certificate_pem)

    with step(world, "the node backend refuses whoever is not API Gateway"):
        for attempt in (None, _foreign(world), _impostor(certificate)):
            status = world.direct_backend_call(attempt, "/nodes/n1/status")
            expect(status == 400, f"a direct call was answered {status}")
        expect(world.backend.seen == [], f"a node API was reached: {world.backend.seen}")


def _walk(world: World, stack: contextlib.ExitStack) -> None:
    deployed = world.stack
    cognito = deployed.clients("cognito-idp")
    pool, client = deployed.physical["UserPool"], deployed.physical["UserPoolClient"]
    with step(world, "users sign in to Cognito"):
        for user in ("admin", "alice", "bob"):
            cognito.admin_create_user(UserPoolId=pool, Username=user)
            cognito.admin_set_user_password(
                UserPoolId=pool, Username=user, Password=PASSWORD, Permanent=True
            )
            attributes = cognito.admin_get_user(UserPoolId=pool, Username=user)["UserAttributes"]
            world.subs[user] = next(a["Value"] for a in attributes if a["Name"] == "sub")
        cognito.admin_add_user_to_group(
            UserPoolId=pool, Username="admin", GroupName=deployed.physical["AdminUserGroup"]
        )
        for user in ("admin", "alice", "bob"):
            result = cognito.initiate_auth(
                ClientId=client,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": user, "PASSWORD": PASSWORD},
            )["AuthenticationResult"]
            world.tokens[user] = result["IdToken"]
        world.tokens["forged"] = world.tokens["alice"][:-4] + "AAAA"

    with step(world, "no token, a forged token: 401 at API Gateway"):
        expect(world.api("GET", "/v1/nodes", None).status == 401, "no token")
        expect(world.api("GET", "/v1/nodes", "forged").status == 401, "forged token")

    with step(world, "the admin registers nodes with their owners' sub"):
        for node, owner in (("n1", "alice"), ("n2", "bob")):
            reply = world.api("PUT", f"/v1/nodes/{node}", "admin", {"owner": world.subs[owner]})
            expect(reply.status in (200, 201), f"PUT {node}: {reply.status} {reply.body!r}")
        reply = world.api("PUT", "/v1/nodes/n3", "alice", {"owner": world.subs["alice"]})
        expect(reply.status == 403, f"a user registered a node: {reply.status}")

    def certificate(user: str, node: str) -> tuple[str, str, str]:
        reply = world.api("POST", "/generate-cert", user, {"nodeId": node})
        expect(reply.status == 201, f"generate-cert: {reply.status} {reply.body!r}")
        issued = reply.json()
        expect(issued["userId"] == world.subs[user], f"issued to {issued['userId']}")
        return issued["certificate"], issued["privateKey"], issued["serialNumber"]

    with step(world, "alice gets a certificate for her node"):
        alice = certificate("alice", "n1")

    with step(world, "PCA throttled: a 503, and its retry with the same Idempotency-Key issues"):
        _retry_after_a_503(world)

    with step(world, "alice calls her node through the mutual-TLS domain: allowed"):
        status, body = world.node_call(alice[:2], "/nodes/n1/status")
        expect(status == 200, f"{status} {body!r}")
        expect(
            body
            == {"path": "/nodes/n1/status", "user": world.subs["alice"], "node": "n1", "api": "n1"},
            f"backend saw {body!r}",
        )

    with step(world, "alice calls bob's node: denied"):
        status, body = world.node_call(alice[:2], "/nodes/n2/status")
        expect(status == 403, f"{status} {body!r}")

    with step(world, "no client certificate, or one from another CA: no handshake"):
        for attempt in (None, _foreign(world)):
            try:
                status, _ = world.node_call(attempt, "/nodes/n1/status")
            except (ssl.SSLError, ConnectionError):
                continue
            raise AssertionError(f"answered {status} without a trusted client certificate")

    with step(world, "alice revokes her certificate: denied"):
        reply = world.api("POST", f"/v1/certificates/{alice[2]}/revoke", "alice", {})
        expect(reply.status == 200, f"revoke: {reply.status} {reply.body!r}")
        status, body = world.node_call(alice[:2], "/nodes/n1/status")
        expect(status == 403, f"revoked certificate: {status} {body!r}")

    with step(world, "the scheduled sweep leaves no revocation pending at the CA"):
        fired = world.gateway.run_schedules()
        result, error = fired["RevocationSweepFunction"]
        expect(error is None and result["pending"] == 0, f"sweep: {result} {error}")

    with step(world, "after a transfer to bob, alice is denied and bob allowed"):
        again = certificate("alice", "n1")
        status, _ = world.node_call(again[:2], "/nodes/n1/status")
        expect(status == 200, f"new certificate before the transfer: {status}")
        reply = world.api("PUT", "/v1/nodes/n1", "admin", {"owner": world.subs["bob"]})
        expect(reply.status == 200, f"transfer: {reply.status} {reply.body!r}")
        status, body = world.node_call(again[:2], "/nodes/n1/status")
        expect(status == 403, f"the old owner after the transfer: {status} {body!r}")
        bob = certificate("bob", "n1")
        status, body = world.node_call(bob[:2], "/nodes/n1/status")
        expect(status == 200 and body["user"] == world.subs["bob"], f"bob: {status} {body!r}")
        # The admin function lists the trail by Query of the outbox table's day partitions.
        listed = world.gateway.request(
            "Api",
            "GET",
            "/v1/audit",
            headers={"Authorization": f"Bearer {world.tokens['admin']}"},
            query={"node": "n1", "action": "node."},
        )
        expect(listed.status == 200, f"audit: {listed.status} {listed.body!r}")
        actions = [entry["action"] for entry in listed.json()["entries"]]
        expect(actions == ["node.transfer", "node.add"], f"audit of n1: {actions}")

    with step(world, "a path naming another node still reaches the node allowed"):
        # API Gateway passes {proxy} as sent. The authorizer denies encoded and dot
        # segments; "..;" it lets through, and a backend that drops ";" parameters before
        # resolving dot segments (as servlet containers do) reads /nodes/n2/status. The
        # recipe routes on X-Nodecert-Node: n1's API it is. (Bob owns n1 by now.)
        status, body = world.node_call(bob[:2], "/nodes/n1/..;/n2/status")
        expect(status == 200 and body["api"] == "n1", f"{status} {body!r}")
        _every_path_reaches_the_node_allowed(world, bob[:2])


def _issued_at_pca() -> int:
    from moto.acmpca.models import acmpca_backends

    cas = acmpca_backends[ACCOUNT][REGION].certificate_authorities.values()
    return sum(len(ca.issued_certificates) for ca in cas)


@contextlib.contextmanager
def _pca_throttling() -> Iterator[None]:
    """moto's PCA answering every IssueCertificate with ThrottlingException (HTTP 400), as
    PCA does past its 25/s quota: refused outright, nothing issued."""
    from moto.acmpca.models import ACMPCABackend
    from moto.core.exceptions import JsonRESTError

    def throttled(self: Any, *args: Any, **kwargs: Any) -> str:
        # A JSON error with its own HTTP status: ThrottlingException is in no service's
        # model (it is common to all), so a modelled moto error would be answered as a 500.
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    original = ACMPCABackend.issue_certificate
    ACMPCABackend.issue_certificate = throttled  # type: ignore[method-assign]
    try:
        yield
    finally:
        ACMPCABackend.issue_certificate = original  # type: ignore[method-assign]


def _retry_after_a_503(world: World) -> None:
    """What deploy/aws/walkthrough.sh's step 5 relies on: a 503 where PCA accepted nothing
    releases the Idempotency-Key, so running it again with the same key gets the
    certificate (one, billed once); the key then names it."""
    key = {"Idempotency-Key": "rehearsal-retry-after-503"}
    body = {"nodeId": "n1"}
    before = _issued_at_pca()
    with _pca_throttling():
        first = world.api("POST", "/generate-cert", "alice", body, key)
    expect(first.status == 503, f"throttled: {first.status} {first.body!r}")
    expect(first.headers.get("Retry-After", "").isdigit(), f"no Retry-After: {first.headers}")
    expect(_issued_at_pca() == before, "PCA issued while throttling")
    retry = world.api("POST", "/generate-cert", "alice", body, key)
    expect(retry.status == 201, f"the retry: {retry.status} {retry.body!r}")
    again = world.api("POST", "/generate-cert", "alice", body, key)
    expect(again.status == 409, f"the same key once more: {again.status} {again.body!r}")
    expect(retry.json()["serialNumber"] in again.body.decode(), f"409: {again.body!r}")
    expect(_issued_at_pca() == before + 1, "PCA issued more than one certificate")


# Paths under /nodes/n1/ built to name another node once normalized: "..;" segments and
# ";" parameters (which the authorizer lets through), dot segments and encoded slashes
# (which it denies), other nodes' ids.
_PATH_PARTS = st.sampled_from(
    ["n1", "n2", "node-1", "..;", "..;/", "..;/n2/", ";", ";x=1", "x", "x.", "/", "..", "%2f"]
)
_PROXIES = st.lists(_PATH_PARTS, min_size=1, max_size=8).map("".join)


def _every_path_reaches_the_node_allowed(world: World, certificate: tuple[str, str]) -> None:
    """Whatever the {proxy} part says, a call for n1 reaches n1's API or is a 4xx (the
    authorizer's deny of an ambiguous path, or the backend's refusal)."""

    @settings(max_examples=30, deadline=None, derandomize=True, database=None)
    @given(proxy=_PROXIES)
    def reaches_n1(proxy: str) -> None:
        status, body = world.node_call(certificate, f"/nodes/n1/{proxy}")
        if status == 200:
            assert body["api"] == "n1" and body["node"] == "n1", (proxy, body)
        else:
            assert 400 <= status < 500, (proxy, status, body)

    reaches_n1()


def _impostor(certificate: ClientCertificate) -> tuple[str, str]:
    """A self-signed certificate with the subject of API Gateway's, and a key of its own."""
    subject = x509.load_pem_x509_certificate(certificate.certificate_pem.encode()).subject
    (name,) = subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    fake = ClientCertificate.generate(str(name.value))
    return fake.certificate_pem, fake.private_key_pem


def _foreign(world: World) -> tuple[str, str]:
    import trustme

    other = trustme.CA().issue_cert("mallory@example.test")
    return (
        b"".join(blob.bytes() for blob in other.cert_chain_pems).decode(),
        other.private_key_pem.bytes().decode(),
    )
