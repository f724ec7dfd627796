"""`nodecert aws truststore` against moto (server mode): ACM PCA in, S3 out."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.aws.truststore import publish
from nodecert.cli import main
from nodecert.core.errors import BackendUnavailableError, NotFoundError
from tests.integration.conftest import REGION
from tests.integration.test_acmpca_moto import create_active_ca


@pytest.fixture(scope="module")
def clients(aws_env, moto_endpoint):
    import boto3

    session = boto3.session.Session()
    return (
        session.client("acm-pca", region_name=REGION, endpoint_url=moto_endpoint),
        session.client("s3", region_name=REGION, endpoint_url=moto_endpoint),
    )


@pytest.fixture(scope="module")
def ca_arn(clients):
    return create_active_ca(clients[0])


def _bucket(s3, *, versioned=True):
    name = f"truststore-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_an_unknown_ca_is_refused_and_nothing_is_written(clients):
    pca, s3 = clients
    bucket = _bucket(s3)
    missing = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/" + str(uuid.uuid4())
    with pytest.raises(NotFoundError, match="no certificate authority"):
        publish(pca, s3, ca_arn=missing, bucket=bucket, key="truststore.pem")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_ca_without_its_certificate_is_refused(clients):
    pca, s3 = clients
    pending = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": "never activated"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    with pytest.raises(BackendUnavailableError, match="truststore"):
        publish(pca, s3, ca_arn=pending, bucket=_bucket(s3), key="truststore.pem")


def test_a_missing_bucket_is_refused(clients, ca_arn):
    pca, s3 = clients
    with pytest.raises(NotFoundError, match="no bucket"):
        publish(pca, s3, ca_arn=ca_arn, bucket="no-such-bucket-" + uuid.uuid4().hex, key="t.pem")


def test_the_truststore_is_the_ca_chain_and_its_version_is_reported(clients, ca_arn):
    pca, s3 = clients
    bucket = _bucket(s3)
    first = publish(pca, s3, ca_arn=ca_arn, bucket=bucket, key="truststore.pem")
    assert first.changed and first.version and first.certificates == 1
    stored = s3.get_object(Bucket=bucket, Key="truststore.pem", VersionId=first.version)
    assert stored["ContentType"] == "application/x-pem-file"
    (certificate,) = x509.load_pem_x509_certificates(stored["Body"].read())
    expected = pca.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn)
    assert certificate == x509.load_pem_x509_certificate(expected["Certificate"].encode())
    # The same chain again writes nothing: the domain's TruststoreVersion stays valid.
    again = publish(pca, s3, ca_arn=ca_arn, bucket=bucket, key="truststore.pem")
    assert (again.changed, again.version) == (False, first.version)
    versions = s3.list_object_versions(Bucket=bucket, Prefix="truststore.pem")["Versions"]
    assert len(versions) == 1


def test_a_changed_chain_gets_a_new_version(clients, ca_arn):
    pca, s3 = clients
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="truststore.pem", Body=b"an old CA\n")
    written = publish(pca, s3, ca_arn=ca_arn, bucket=bucket, key="truststore.pem")
    assert written.changed
    versions = s3.list_object_versions(Bucket=bucket, Prefix="truststore.pem")["Versions"]
    assert [v["VersionId"] for v in versions if v["IsLatest"]] == [written.version]


def test_an_unversioned_bucket_says_there_is_no_version(clients, ca_arn):
    pca, s3 = clients
    published = publish(pca, s3, ca_arn=ca_arn, bucket=_bucket(s3, versioned=False), key="t.pem")
    assert published.version in (None, "null")
    if published.version is None:
        assert "not versioned" in published.lines()[-1]


def test_the_cli_prints_the_version_for_the_stack(clients, ca_arn, moto_endpoint, capsys):
    _, s3 = clients
    bucket = _bucket(s3)
    argv = ["aws", "truststore", "--ca-arn", ca_arn, "--bucket", bucket]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 0
    out = capsys.readouterr().out
    latest = s3.head_object(Bucket=bucket, Key="truststore.pem")["VersionId"]
    assert f"version: {latest}" in out.splitlines()
    assert f"s3://{bucket}/truststore.pem" in out


def test_the_cli_reports_a_bad_ca_as_one_line(clients, moto_endpoint, capsys):
    _, s3 = clients
    missing = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/" + str(uuid.uuid4())
    argv = ["aws", "truststore", "--ca-arn", missing, "--bucket", _bucket(s3)]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nodecert: error: truststore: no certificate authority")
    assert "Traceback" not in err


def test_a_local_two_tier_chain_from_a_file_is_the_truststore(
    clients, moto_endpoint, tmp_path, capsys
):
    from nodecert.backends.local.ca import LocalCA

    _, s3 = clients
    bucket = _bucket(s3)
    ca = LocalCA.generate(organization="nodecert", trust_domain="nodecert.local", two_tier=True)
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in ca.chain())
    (tmp_path / "ca.crt").write_text(chain)  # What `GET /v1/ca` serves.
    argv = ["aws", "truststore", "--ca-file", str(tmp_path / "ca.crt"), "--bucket", bucket]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 0
    assert "2 certificate(s), written" in capsys.readouterr().out
    stored = s3.get_object(Bucket=bucket, Key="truststore.pem")["Body"].read()
    assert x509.load_pem_x509_certificates(stored) == list(ca.chain())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no PEM certificates"),
        (b"not a certificate\n", "no PEM certificates"),
        (b"x" * (2 << 20), "larger than"),
        ("leaf", "is not a CA certificate"),
        ("reversed", "not in order"),
        (None, "No such file"),
    ],
)
def test_a_bad_ca_file_is_one_line_and_writes_nothing(
    clients, moto_endpoint, tmp_path, capsys, content, message
):
    import trustme

    _, s3 = clients
    bucket = _bucket(s3)
    root = trustme.CA()
    path = tmp_path / "ca.crt"
    if content == "leaf":
        path.write_bytes(root.issue_cert("node.example.test").cert_chain_pems[0].bytes())
    elif content == "reversed":
        path.write_bytes(root.cert_pem.bytes() + root.create_child_ca().cert_pem.bytes())
    elif content is not None:
        path.write_bytes(content)
    argv = ["aws", "truststore", "--ca-file", str(path), "--bucket", bucket]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nodecert: error:") and message in err, err
    assert "Traceback" not in err
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_ca_arn_and_ca_file_do_not_go_together(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["aws", "truststore", "--ca-arn", ARN, "--ca-file", "x", "--bucket", "b"])
    assert stop.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# What moto cannot return: chains that are not a CA chain (botocore Stubber, real shapes).

ARN = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/" + "1" * 36


def _stubbed(certificate: str, chain: str | None):
    import boto3
    from botocore.stub import Stubber

    pca = boto3.session.Session().client(
        "acm-pca", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(pca)
    response = {"Certificate": certificate}
    if chain is not None:
        response["CertificateChain"] = chain
    stubber.add_response(
        "get_certificate_authority_certificate", response, {"CertificateAuthorityArn": ARN}
    )
    stubber.activate()
    return pca


def test_a_leaf_certificate_is_no_truststore():
    import trustme

    from nodecert.aws.truststore import chains_pem

    leaf = trustme.CA().issue_cert("node.example.test").cert_chain_pems[0].bytes().decode()
    with pytest.raises(BackendUnavailableError, match="is not a CA certificate"):
        chains_pem(_stubbed(leaf, None), [ARN])


def test_a_chain_out_of_order_is_refused():
    import trustme

    from nodecert.aws.truststore import chains_pem

    intermediate = trustme.CA().create_child_ca().cert_pem.bytes().decode()
    unrelated_root = trustme.CA().cert_pem.bytes().decode()
    with pytest.raises(BackendUnavailableError, match="not in order"):
        chains_pem(_stubbed(intermediate, unrelated_root), [ARN])


def test_a_subordinate_ca_brings_its_chain():
    import trustme

    from nodecert.aws.truststore import chains_pem

    root = trustme.CA()
    intermediate = root.create_child_ca()
    pem, count = chains_pem(
        _stubbed(intermediate.cert_pem.bytes().decode(), root.cert_pem.bytes().decode()), [ARN]
    )
    assert count == 2
    expected = [x509.load_pem_x509_certificate(ca.cert_pem.bytes()) for ca in (intermediate, root)]
    assert x509.load_pem_x509_certificates(pem.encode()) == expected


# A rotation of the two-tier PCA shape: API Gateway looks the client certificate's issuer up
# in the truststore, so the new subordinate and the retiring one must both be there.


@pytest.fixture(scope="module")
def subordinates(clients):
    from datetime import UTC, datetime

    from nodecert.backends.local.hierarchy import make_intermediate, make_root
    from nodecert.backends.local.home import ca_name
    from nodecert.core.keys import KeyType, generate_private_key

    pca, _ = clients
    now = datetime.now(UTC)
    root_key = generate_private_key(KeyType.EC_P256)
    root = make_root(root_key, "nodecert", now)
    made = {"root": root}
    for name in ("old", "new"):
        key = generate_private_key(KeyType.EC_P256)
        certificate = make_intermediate(
            key.public_key(),
            ca_name("nodecert", f"issuer {name}"),
            root_key=root_key,
            root=root,
            now=now,
        )
        arn = pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": name},
            },
            CertificateAuthorityType="SUBORDINATE",
        )["CertificateAuthorityArn"]
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn,
            Certificate=certificate.public_bytes(Encoding.PEM),
            CertificateChain=root.public_bytes(Encoding.PEM),
        )
        made[name], made[arn] = certificate, certificate
        made[f"{name}-arn"] = arn
    return made


def test_a_rotation_truststore_holds_both_subordinates_and_the_root_once(
    clients, subordinates, moto_endpoint, capsys
):
    _, s3 = clients
    bucket = _bucket(s3)
    new, old = subordinates["new-arn"], subordinates["old-arn"]
    argv = ["aws", "truststore", "--ca-arn", new, "--ca-arn", old, "--bucket", bucket]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 0
    assert "(3 certificate(s), written)" in capsys.readouterr().out
    stored = s3.get_object(Bucket=bucket, Key="truststore.pem")["Body"].read()
    expected = [subordinates["new"], subordinates["old"], subordinates["root"]]
    assert x509.load_pem_x509_certificates(stored) == expected
    # The same two again write nothing; the new one alone (the overlap is over) does.
    again = publish(clients[0], s3, ca_arn=[new, old], bucket=bucket, key="truststore.pem")
    assert not again.changed
    alone = publish(clients[0], s3, ca_arn=new, bucket=bucket, key="truststore.pem")
    assert alone.changed and alone.certificates == 2


def test_a_rotation_ca_file_needs_every_issuer_after_its_certificate(
    clients, subordinates, moto_endpoint, tmp_path, capsys
):
    # GET /v1/ca during a PCA rotation: the issuing CA, the retiring one, the root last.
    _, s3 = clients
    ordered = [subordinates["new"], subordinates["old"], subordinates["root"]]
    path = tmp_path / "ca.pem"
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ordered))
    argv = ["aws", "truststore", "--ca-file", str(path), "--bucket", _bucket(s3)]
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 0
    # Without the root, the subordinates' issuer is nowhere after them.
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ordered[:2]))
    assert main([*argv, "--region", REGION, "--endpoint-url", moto_endpoint]) == 1
    err = capsys.readouterr().err
    assert "not in order: the issuer of" in err and "issuer new" in err


# The bytes written, one ARN or several: what each --ca-arn's chain makes of the bundle is
# pinned here (an unchanged CA set must keep its S3 version, the stack's TruststoreVersion).


def _pem(*certificates) -> bytes:
    return b"".join(
        x509.load_pem_x509_certificate(c.cert_pem.bytes()).public_bytes(Encoding.PEM)
        for c in certificates
    )


def _stubbed_chains(*chains):
    """ACM PCA answering GetCertificateAuthorityCertificate for ARNs 0, 1, ... in turn."""
    import boto3
    from botocore.stub import Stubber

    pca = boto3.session.Session().client(
        "acm-pca", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(pca)
    for index, (ca, *above) in enumerate(chains):
        response = {"Certificate": _pem(ca).decode()}
        if above:
            response["CertificateChain"] = _pem(*above).decode()
        stubber.add_response(
            "get_certificate_authority_certificate",
            response,
            {"CertificateAuthorityArn": ARN[:-1] + str(index)},
        )
    stubber.activate()
    return pca, [ARN[:-1] + str(index) for index in range(len(chains))]


@pytest.fixture(scope="module")
def hierarchies():
    import trustme

    root_a, root_b = trustme.CA(), trustme.CA()
    middle = root_a.create_child_ca()
    return {
        "root a": root_a,
        "root b": root_b,
        "sub a": root_a.create_child_ca(),
        "sub a2": root_a.create_child_ca(),
        "sub b": root_b.create_child_ca(),
        "middle": middle,
        "sub middle": middle.create_child_ca(),
    }


@pytest.mark.parametrize(
    ("chains", "written"),
    [
        # One ARN: its chain as ACM PCA gives it.
        ([["root a"]], ["root a"]),
        ([["sub a", "root a"]], ["sub a", "root a"]),
        ([["sub middle", "middle", "root a"]], ["sub middle", "middle", "root a"]),
        # A root before a CA below it is put last, for one ARN as for several (ACM PCA's
        # chain is in order anyway: the root last, each certificate signing the one before).
        ([["sub middle", "root a", "middle"]], ["sub middle", "middle", "root a"]),
        # Several: the CAs in the order given, then what is above them, the roots last.
        ([["sub a", "root a"], ["sub a2", "root a"]], ["sub a", "sub a2", "root a"]),
        (
            [["sub middle", "middle", "root a"], ["sub a", "root a"]],
            ["sub middle", "sub a", "middle", "root a"],
        ),
        # Several roots (a new hierarchy): in the order they come, the CAs' own first.
        (
            [["sub a", "root a"], ["sub b", "root b"]],
            ["sub a", "sub b", "root a", "root b"],
        ),
        ([["root b"], ["sub a", "root a"]], ["sub a", "root b", "root a"]),
        ([["sub a", "root a"], ["root b"]], ["sub a", "root b", "root a"]),
        ([["root a"], ["root b"]], ["root a", "root b"]),
        # The same CA twice is written once.
        ([["sub a", "root a"], ["sub a", "root a"]], ["sub a", "root a"]),
    ],
)
def test_the_bundle_written_for_one_arn_or_several(clients, hierarchies, chains, written):
    _, s3 = clients
    bucket = _bucket(s3)
    pca, arns = _stubbed_chains(*([hierarchies[name] for name in chain] for chain in chains))
    published = publish(
        pca, s3, ca_arn=arns[0] if len(arns) == 1 else arns, bucket=bucket, key="t.pem"
    )
    stored = s3.get_object(Bucket=bucket, Key="t.pem")["Body"].read()
    assert stored == _pem(*(hierarchies[name] for name in written))
    assert published.certificates == len(written)
    if len(arns) == 1:  # One ARN in a list is the same bundle, so the same version.
        pca, arns = _stubbed_chains(*([hierarchies[name] for name in chain] for chain in chains))
        again = publish(pca, s3, ca_arn=arns, bucket=bucket, key="t.pem")
        assert (again.changed, again.version) == (False, published.version)
