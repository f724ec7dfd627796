"""``nodecert aws truststore``: the mutual-TLS custom domain's truststore, from the CA.

API Gateway checks a client certificate's chain against a PEM bundle in S3 (the domain's
``MutualTlsAuthentication.TruststoreUri``, pinned to one ``TruststoreVersion``). It looks
the client certificate's *issuer* up in that bundle (AWS Knowledge Center, "troubleshoot
HTTP 403 Forbidden errors from an API Gateway custom domain name that requires mutual TLS":
"Could not find issuer for certificate"); an intermediate the client sends does not stand
in for one missing from the truststore. So the truststore holds every issuing CA whose
certificates are in use, and its root: during a rotation of the two-tier PCA shape, the new
subordinate and the retiring one (``--ca-arn`` once for each).

This module fetches each CA certificate and its chain from ACM PCA
(``GetCertificateAuthorityCertificate``; a subordinate CA's chain included), or reads them
from a file (``--ca-file``: a local two-tier CA's ``GET /v1/ca``, intermediates and root),
checks that they are CA certificates whose issuers follow them, and writes them to the
bucket. The S3
version it prints is the stack's ``NodeTruststoreVersion`` parameter (deploy/template.yaml,
docs/aws.md).

Writing the same bundle again writes nothing and reports the current version, so the
command is safe to run on every deploy: the domain changes only when the CA does.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.backends.acmpca.rotation import served_chain
from nodecert.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
)
from nodecert.issuing.issuers import issued_by

__all__ = [
    "Published",
    "chains_pem",
    "checked_pem",
    "file_pem",
    "publish",
    "publish_pem",
    "register",
]


# A CA chain is a few KiB; anything much larger (/dev/zero, a disk image) is refused unread.
_MAX_CA_FILE = 1 << 20


@dataclass(frozen=True, slots=True)
class Published:
    """Where the truststore is and which version API Gateway should use."""

    uri: str
    version: str | None
    sha256: str
    certificates: int
    changed: bool

    def lines(self) -> list[str]:
        """The human-readable report, one fact a line."""
        state = "written" if self.changed else "unchanged (same certificates)"
        return [
            f"truststore: {self.uri} ({self.certificates} certificate(s), {state})",
            f"sha256: {self.sha256}",
            "version: "
            + (self.version or "none: the bucket is not versioned (API Gateway uses the latest)"),
        ]


def chains_pem(pca: Any, ca_arns: Sequence[str]) -> tuple[str, int]:
    """The chains of one CA or several (a rotation's new and retiring subordinates) as one
    PEM bundle, and how many certificates.

    ``pca`` is a boto3 ACM PCA client. The CAs first, in the order given, then what is
    above them, the roots last; each certificate once (:func:`served_chain`, its roots in
    the order they come).

    Raises:
        NotFoundError: no such certificate authority.
        BackendUnavailableError: ACM PCA refused or returned something that is no CA chain.
    """
    chains = [_pca_chain(pca, arn) for arn in ca_arns]
    certificates = served_chain(chains, first_root_last=False)
    return checked_pem(certificates), len(certificates)


def _pca_chain(pca: Any, ca_arn: str) -> list[x509.Certificate]:
    from nodecert.support.awsclients import botocore_errors, error_code, error_message

    try:
        response = pca.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn)
    except botocore_errors() as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            raise NotFoundError(f"truststore: no certificate authority {ca_arn}") from exc
        raise BackendUnavailableError(
            f"truststore: ACM PCA GetCertificateAuthorityCertificate: {code}: {error_message(exc)}"
        ) from exc
    text = (response.get("Certificate") or "") + "\n" + (response.get("CertificateChain") or "")
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise BackendUnavailableError(
            f"truststore: the CA {ca_arn} has no certificate yet (is it activated?)"
        ) from exc


def file_pem(data: bytes) -> tuple[str, int]:
    """A CA chain from a PEM file (a local CA's ``GET /v1/ca``), checked as from ACM PCA.

    Raises:
        InvalidRequestError: not PEM certificates, or no CA chain in order.
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidRequestError("truststore: --ca-file holds no PEM certificates") from exc
    try:
        return checked_pem(certificates), len(certificates)
    except BackendUnavailableError as exc:
        raise InvalidRequestError(f"{exc.detail} (--ca-file)") from exc


def checked_pem(certificates: Sequence[x509.Certificate]) -> str:
    """``certificates`` as one PEM bundle, once they are CA certificates that chain up.

    Each must be a CA, and each but a root must be issued (name and signature) by one
    that follows it: one chain, issuing CA first up to the root, as ACM PCA gives it, or
    several CAs first and what is above them after (``GET /v1/ca`` during a rotation).

    Raises:
        BackendUnavailableError: one is no CA certificate, or they are not in order.
    """
    for certificate in certificates:
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise BackendUnavailableError(
                f"truststore: {certificate.subject.rfc4514_string()} is not a CA certificate"
            )
    for index, child in enumerate(certificates):
        if child.issuer == child.subject:
            continue
        if not any(issued_by(child, parent) for parent in certificates[index + 1 :]):
            raise BackendUnavailableError(
                "truststore: the CA chain is not in order: the issuer of"
                f" {child.subject.rfc4514_string()} does not follow it"
            )
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def publish(pca: Any, s3: Any, *, ca_arn: str | Sequence[str], bucket: str, key: str) -> Published:
    """Write the CA chain of ``ca_arn`` to ``s3://bucket/key`` unless it is already there.

    ``pca`` and ``s3`` are boto3 clients (ACM PCA, S3). Several ARNs (a rotation's new and
    retiring subordinates) write one bundle of their chains (:func:`chains_pem`).

    Raises:
        NotFoundError: no such certificate authority, or no such bucket.
        BackendUnavailableError: ACM PCA or S3 refused.
    """
    pem, count = chains_pem(pca, [ca_arn] if isinstance(ca_arn, str) else ca_arn)
    return publish_pem(s3, pem, count, bucket=bucket, key=key)


def publish_pem(s3: Any, pem: str, count: int, *, bucket: str, key: str) -> Published:
    """Write a checked chain (:func:`chains_pem`, :func:`file_pem`) unless it is there already.

    Raises:
        NotFoundError: no such bucket.
        BackendUnavailableError: S3 refused.
    """
    from nodecert.support.awsclients import botocore_errors, error_code, error_message

    digest = hashlib.sha256(pem.encode()).hexdigest()
    uri = f"s3://{bucket}/{key}"
    try:
        try:
            current = s3.get_object(Bucket=bucket, Key=key)
        except botocore_errors() as exc:
            if error_code(exc) not in {"NoSuchKey", "404"}:
                raise
        else:
            with current["Body"] as body:
                if body.read() == pem.encode():
                    return Published(uri, current.get("VersionId"), digest, count, False)
        written = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=pem.encode(),
            ContentType="application/x-pem-file",
        )
    except botocore_errors() as exc:
        code = error_code(exc)
        if code == "NoSuchBucket":
            raise NotFoundError(f"truststore: no bucket {bucket!r}") from exc
        raise BackendUnavailableError(
            f"truststore: S3 {uri}: {code}: {error_message(exc)}"
        ) from exc
    return Published(uri, written.get("VersionId"), digest, count, True)


def register(sub: Any) -> None:
    """Add ``aws truststore`` to the CLI's subcommands (``sub`` from ``add_subparsers``)."""
    aws = sub.add_parser("aws", help="AWS deployment helpers (deploy/template.yaml)")
    aws_sub = aws.add_subparsers(metavar="ACTION")
    truststore = aws_sub.add_parser(
        "truststore",
        help="write the ACM PCA chain to the mTLS domain's truststore in S3",
        description=(
            "Fetch the CA certificate and chain from ACM PCA and write them to S3 for the"
            " mutual-TLS custom domain; print the S3 version for NodeTruststoreVersion."
        ),
    )
    source = truststore.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ca-arn",
        action="append",
        help=(
            "the ACM PCA certificate authority; during a rotation give it once for the new"
            " subordinate and once for each retiring one (API Gateway needs each issuer)"
        ),
    )
    source.add_argument(
        "--ca-file",
        type=Path,
        metavar="PATH",
        help="a CA chain PEM instead (a local CA's GET /v1/ca: intermediate, root)",
    )
    truststore.add_argument("--bucket", required=True, help="the TruststoreBucketName output")
    truststore.add_argument("--key", default="truststore.pem", help="the object key")
    truststore.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    truststore.add_argument("--endpoint-url", default=None, help=argparse.SUPPRESS)
    truststore.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> None:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(
            "nodecert aws truststore: boto3 is not installed (pip install 'nodecert[aws]')"
        ) from exc
    session = boto3.session.Session()
    s3 = session.client("s3", region_name=args.region, endpoint_url=args.endpoint_url)
    if args.ca_file is not None:
        try:
            with open(args.ca_file, "rb") as stream:
                data = stream.read(_MAX_CA_FILE + 1)
        except OSError as exc:
            raise InvalidRequestError(f"--ca-file: {args.ca_file}: {exc.strerror}") from exc
        if len(data) > _MAX_CA_FILE:
            raise InvalidRequestError(f"--ca-file: {args.ca_file}: larger than 1 MiB")
        pem, count = file_pem(data)
        result = publish_pem(s3, pem, count, bucket=args.bucket, key=args.key)
    else:
        pca = session.client("acm-pca", region_name=args.region, endpoint_url=args.endpoint_url)
        result = publish(pca, s3, ca_arn=args.ca_arn, bucket=args.bucket, key=args.key)
    for line in result.lines():
        print(line)
