"""A CloudFormation stand-in: the SAM-translated template's resources, made in moto.

Only what the rehearsal runs is made (Cognito, ACM PCA, DynamoDB, S3, API Gateway's client
certificate, and the Lambda functions' and REST APIs' descriptions); IAM roles, permissions,
log groups, schedules, alarms and deployments are listed in :attr:`Stack.not_emulated`.
:meth:`Stack.deploy` again, with changed parameters, makes what the first pass left out
(the second deploy of docs/aws.md). Values come from the template itself
(table keys, pool settings, CA configuration, function environments), resolved through
the intrinsic functions the template uses.
"""

from __future__ import annotations

import datetime
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"


class TemplateError(AssertionError):
    """The template asks for something the stand-in cannot resolve: a wiring mistake."""


class _NotMadeYetError(TemplateError):
    """A reference to a resource that a later pass of :meth:`Stack.deploy` makes."""


class _NoValue:
    """``Ref AWS::NoValue``: the property is left out."""


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class ClientCertificate:
    """An ``AWS::ApiGateway::ClientCertificate``: what API Gateway presents to backends.

    AWS keeps the private key and hands out only the PEM certificate
    (``GetClientCertificate``'s ``pemEncodedCertificate``); the stand-in plays API Gateway,
    so it holds both. Self-signed, as AWS's are.
    """

    certificate_pem: str
    private_key_pem: str

    @classmethod
    def generate(cls, name: str) -> ClientCertificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        return cls(
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
        )


@dataclass
class Function:
    """A Lambda function as the template describes it."""

    logical_id: str
    handler: str
    environment: dict[str, str]
    timeout: float
    # The IAM actions its role's policies grant (conditions resolved, resources not).
    actions: frozenset[str] = frozenset()


@dataclass
class Stack:
    """The resources of one translated template, created in moto through ``clients``."""

    template: dict[str, Any]
    parameters: dict[str, str]
    clients: Any  # callable: service name -> boto3 client
    name: str = "rehearsal"
    stack_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    not_emulated: list[str] = field(default_factory=list)
    client_certificates: dict[str, ClientCertificate] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]  # type: ignore[no-any-return]

    def deploy(self) -> Stack:
        order = [
            "AWS::Cognito::UserPool",
            "AWS::Cognito::UserPoolClient",
            "AWS::Cognito::UserPoolGroup",
            "AWS::ACMPCA::CertificateAuthority",
            "AWS::ACMPCA::Certificate",
            "AWS::ACMPCA::CertificateAuthorityActivation",
            "AWS::DynamoDB::Table",
            "AWS::S3::Bucket",
            "AWS::ApiGateway::RestApi",
            "AWS::ApiGateway::ClientCertificate",
            "AWS::ApiGateway::Stage",
            "AWS::ApiGateway::DomainName",
            "AWS::Lambda::Function",
        ]
        # By type, in the order above; a resource that refers to one not made yet (a
        # subordinate CA's certificate waits for its root's activation) waits for the
        # next pass, as CloudFormation orders by references.
        waiting: dict[str, TemplateError] = {}
        while True:
            waiting.clear()
            made = len(self.physical)
            for kind in order:
                for logical, resource in self.resources.items():
                    if logical in self.physical:
                        continue  # made by an earlier deploy or pass
                    if resource["Type"] == kind and self.condition(resource):
                        try:
                            getattr(self, "_" + kind.split("::", 1)[1].replace("::", "_"))(
                                logical, resource.get("Properties", {})
                            )
                        except _NotMadeYetError as exc:
                            waiting[logical] = exc
            if not waiting:
                break
            if len(self.physical) == made:
                raise next(iter(waiting.values()))
        self.not_emulated = sorted(
            {r["Type"] for r in self.resources.values() if r["Type"] not in order}
        )
        return self

    # Intrinsic functions.

    def condition(self, resource: dict[str, Any]) -> bool:
        name = resource.get("Condition")
        return True if name is None else bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::", "Condition")):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(argument)
        if function == "Fn::GetAtt":
            name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._get_att(name, attribute)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            variables = {k: self.resolve(v) for k, v in variables.items()}
            return re.sub(
                r"\$\{([^}!]+)\}", lambda m: str(variables.get(m[1]) or self._sub(m[1])), text
            )
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(self.resolve(i)) for i in items)
        if function == "Fn::If":
            name, yes, no = argument
            return self.resolve(yes if self.resolve(self.template["Conditions"][name]) else no)
        if function == "Fn::Equals":
            left, right = (self.resolve(a) for a in argument)
            return left == right
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Fn::And":
            return all(self.resolve(a) for a in argument)
        if function == "Fn::Or":
            return any(self.resolve(a) for a in argument)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if function == "Condition":
            return self.resolve(self.template["Conditions"][argument])
        raise TemplateError(f"intrinsic {function} is not emulated")

    def _role_policies(self, p: dict[str, Any]) -> Any:
        # SAM's translation gives each function a role of its own (FunctionRole).
        role = p.get("Role")
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            return []
        name = (
            role["Fn::GetAtt"][0]
            if isinstance(role["Fn::GetAtt"], list)
            else role["Fn::GetAtt"].split(".", 1)[0]
        )
        resource = self.template["Resources"].get(name, {})
        return resource.get("Properties", {}).get("Policies", [])

    def _granted(self, value: Any) -> set[str]:
        """The ``Action`` strings under ``value``, following ``Fn::If`` as deployed."""
        if isinstance(value, list):
            return set().union(*(self._granted(v) for v in value))
        if not isinstance(value, dict):
            return set()
        if set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return self._granted(yes if self.resolve(self.template["Conditions"][name]) else no)
        actions = value.get("Action", [])
        found = {actions} if isinstance(actions, str) else set(actions)
        for key, item in value.items():
            if key not in ("Action", "Resource", "Condition"):
                found |= self._granted(item)
        return found

    def _sub(self, name: str) -> str:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self._get_att(logical, attribute)
        return str(self._ref(name))

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.name}/{self.stack_id}"
            ),
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template.get("Parameters", {}).get(name)
        if declared is not None:
            if "Default" not in declared:
                raise TemplateError(f"parameter {name} has no value")
            return str(declared["Default"])
        if name not in self.physical:
            if name in self.resources:
                raise _NotMadeYetError(f"Ref {name}: not made yet")
            raise TemplateError(f"Ref {name}: no such resource")
        return self.physical[name]

    def _get_att(self, name: str, attribute: str) -> str:
        if (name, attribute) not in self.attributes:
            if name in self.resources and name not in self.physical:
                raise _NotMadeYetError(f"GetAtt {name}.{attribute}: not made yet")
            raise TemplateError(f"GetAtt {name}.{attribute}: not available")
        return self.attributes[(name, attribute)]

    # Resources.

    def _Cognito_UserPool(self, logical: str, p: dict[str, Any]) -> None:
        pool = self.clients("cognito-idp").create_user_pool(
            PoolName=self.resolve(p["UserPoolName"]),
            Policies=self.resolve(p.get("Policies", {})),
            AdminCreateUserConfig=self.resolve(p.get("AdminCreateUserConfig", {})),
        )["UserPool"]
        self.physical[logical] = pool["Id"]
        self.attributes[(logical, "Arn")] = pool["Arn"]

    def _Cognito_UserPoolClient(self, logical: str, p: dict[str, Any]) -> None:
        client = self.clients("cognito-idp").create_user_pool_client(
            UserPoolId=self.resolve(p["UserPoolId"]),
            ClientName=self.resolve(p["ClientName"]),
            GenerateSecret=bool(p.get("GenerateSecret", False)),
            ExplicitAuthFlows=self.resolve(p.get("ExplicitAuthFlows", [])),
        )["UserPoolClient"]
        self.physical[logical] = client["ClientId"]

    def _Cognito_UserPoolGroup(self, logical: str, p: dict[str, Any]) -> None:
        name = self.resolve(p["GroupName"])
        self.clients("cognito-idp").create_group(
            UserPoolId=self.resolve(p["UserPoolId"]), GroupName=name
        )
        self.physical[logical] = name

    def _ACMPCA_CertificateAuthority(self, logical: str, p: dict[str, Any]) -> None:
        arn = self.clients("acm-pca").create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": self.resolve(p["KeyAlgorithm"]),
                "SigningAlgorithm": self.resolve(p["SigningAlgorithm"]),
                "Subject": self.resolve(p["Subject"]),
            },
            CertificateAuthorityType=self.resolve(p["Type"]),
            UsageMode=self.resolve(p.get("UsageMode", "GENERAL_PURPOSE")),
            KeyStorageSecurityStandard=self.resolve(
                p.get("KeyStorageSecurityStandard", "FIPS_140_2_LEVEL_3_OR_HIGHER")
            ),
        )["CertificateAuthorityArn"]
        self.physical[logical] = arn
        self.attributes[(logical, "Arn")] = arn
        csr = self.clients("acm-pca").get_certificate_authority_csr(CertificateAuthorityArn=arn)
        self.attributes[(logical, "CertificateSigningRequest")] = csr["Csr"]

    def _ACMPCA_Certificate(self, logical: str, p: dict[str, Any]) -> None:
        pca, ca = self.clients("acm-pca"), self.resolve(p["CertificateAuthorityArn"])
        arn = pca.issue_certificate(
            CertificateAuthorityArn=ca,
            Csr=self.resolve(p["CertificateSigningRequest"]).encode(),
            SigningAlgorithm=self.resolve(p["SigningAlgorithm"]),
            TemplateArn=self.resolve(p["TemplateArn"]),
            Validity=self.resolve(p["Validity"]),
        )["CertificateArn"]
        pem = pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"]
        self.physical[logical] = arn
        self.attributes[(logical, "Certificate")] = pem

    def _ACMPCA_CertificateAuthorityActivation(self, logical: str, p: dict[str, Any]) -> None:
        chain = self.resolve(p.get("CertificateChain", {"Ref": "AWS::NoValue"}))
        self.clients("acm-pca").import_certificate_authority_certificate(
            CertificateAuthorityArn=self.resolve(p["CertificateAuthorityArn"]),
            Certificate=self.resolve(p["Certificate"]).encode(),
            **({} if chain is NO_VALUE else {"CertificateChain": chain.encode()}),
        )
        self.physical[logical] = self.resolve(p["CertificateAuthorityArn"])

    def _DynamoDB_Table(self, logical: str, p: dict[str, Any]) -> None:
        name = f"{self.name}-{logical}-{secrets.token_hex(4)}"
        client = self.clients("dynamodb")
        keys = (
            "BillingMode",
            "AttributeDefinitions",
            "KeySchema",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
        )
        client.create_table(TableName=name, **{k: self.resolve(p[k]) for k in keys if k in p})
        if "TimeToLiveSpecification" in p:
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification=self.resolve(p["TimeToLiveSpecification"])
            )
        self.physical[logical] = name
        self.attributes[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    def _S3_Bucket(self, logical: str, p: dict[str, Any]) -> None:
        name = f"{self.name}-{logical.lower()}-{secrets.token_hex(4)}"
        s3 = self.clients("s3")
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        if "VersioningConfiguration" in p:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration=self.resolve(p["VersioningConfiguration"])
            )
        self.physical[logical] = name
        self.attributes[(logical, "Arn")] = f"arn:aws:s3:::{name}"

    def _ApiGateway_RestApi(self, logical: str, p: dict[str, Any]) -> None:
        self.physical[logical] = secrets.token_hex(5)

    def _ApiGateway_ClientCertificate(self, logical: str, p: dict[str, Any]) -> None:
        identifier = secrets.token_hex(3)
        self.client_certificates[identifier] = ClientCertificate.generate(
            f"{self.name}-{logical}-{identifier}"
        )
        self.physical[logical] = identifier

    def _ApiGateway_Stage(self, logical: str, p: dict[str, Any]) -> None:
        self.physical[logical] = self.resolve(p["StageName"])

    def _ApiGateway_DomainName(self, logical: str, p: dict[str, Any]) -> None:
        self.physical[logical] = self.resolve(p["DomainName"])

    def _Lambda_Function(self, logical: str, p: dict[str, Any]) -> None:
        variables = self.resolve(p.get("Environment", {}).get("Variables", {}))
        self.functions[logical] = Function(
            logical_id=logical,
            handler=self.resolve(p["Handler"]),
            environment={k: str(v) for k, v in variables.items()},
            timeout=float(self.resolve(p.get("Timeout", 3))),
            actions=frozenset(self._granted(self._role_policies(p))),
        )
        self.physical[logical] = f"{self.name}-{logical}"
        self.attributes[(logical, "Arn")] = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}-{logical}"
        )

    # Lookups for the gateway.

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """Logical id → resource of every deployed resource of ``kind``."""
        return {
            name: r for name, r in self.resources.items() if r["Type"] == kind and self.condition(r)
        }

    def stage_of(self, api: str) -> str:
        """The stage name of REST API ``api``."""
        return self.physical[self.stage_resource(api)]

    def stage_resource(self, api: str) -> str:
        """The logical id of REST API ``api``'s stage."""
        for name, stage in self.of_type("AWS::ApiGateway::Stage").items():
            if stage["Properties"]["RestApiId"] == {"Ref": api}:
                return name
        raise TemplateError(f"{api}: no stage")
