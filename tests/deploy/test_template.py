"""template.yaml says what the code and the Dockerfile expect (cfn-lint checks it against AWS in `make lint`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from devtools.processes import ROOT
from functions.settings import FunctionSettings
from ingestor.settings import IngestorSettings
from tests.support.shipping import read_dockerfile, read_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return read_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def only(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (body,) = resources_of(template, kind).values()
    return body


NO_VALUE = object()


def deployed(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    """The resources CloudFormation makes for these parameter values (the rest at their defaults).

    Conditions are evaluated, resources whose condition is false dropped, and every ``Fn::If``
    replaced by its chosen branch (``AWS::NoValue`` removes the key or list item), as the
    LanguageExtensions transform does before the Serverless one runs.
    """
    declared = template["Parameters"]
    assert set(parameters) <= set(declared)
    values = {name: parameters.get(name, body.get("Default")) for name, body in declared.items()}

    def value(node: Any) -> Any:
        return values[node["Ref"]] if isinstance(node, dict) and set(node) == {"Ref"} else node

    def holds(expression: dict[str, Any]) -> bool:
        if "Fn::Condition" in expression:  # !Condition, as the YAML reader writes it
            return holds(template["Conditions"][expression["Fn::Condition"]])
        if "Fn::Or" in expression:
            return any(holds(item) for item in expression["Fn::Or"])
        if "Fn::And" in expression:
            return all(holds(item) for item in expression["Fn::And"])
        if "Fn::Equals" in expression:
            left, right = expression["Fn::Equals"]
            return str(value(left)) == str(value(right))
        if "Fn::Not" in expression:
            return not holds(expression["Fn::Not"][0])
        raise AssertionError(f"condition not understood here: {expression}")

    conditions = {name: holds(body) for name, body in template["Conditions"].items()}

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if node == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            if set(node) == {"Fn::If"}:
                name, chosen, other = node["Fn::If"]
                return resolve(chosen if conditions[name] else other)
            return {key: item for key, item in ((k, resolve(v)) for k, v in node.items()) if item is not NO_VALUE}
        if isinstance(node, list):
            return [item for item in map(resolve, node) if item is not NO_VALUE]
        return node

    return {
        name: resolve(body)
        for name, body in template["Resources"].items()
        if conditions.get(body.get("Condition", ""), True)
    }


def test_the_function_is_the_dockerfile_function_target(template: dict[str, Any]) -> None:
    function = only(template, "AWS::Serverless::Function")
    properties, metadata = function["Properties"], function["Metadata"]
    assert properties["PackageType"] == "Image"
    assert properties["Architectures"] == ["x86_64"]
    assert (ROOT / metadata["DockerContext"] / metadata["Dockerfile"]).is_file()
    assert metadata["DockerBuildTarget"] in read_dockerfile(ROOT / metadata["Dockerfile"]).stages
    assert metadata["DockerBuildTarget"] == "function"
    assert metadata["DockerTag"]
    assert {"Handler", "Runtime"}.isdisjoint(properties)  # the image's CMD is the handler


def test_every_path_of_the_http_api_reaches_the_function(template: dict[str, Any]) -> None:
    function = only(template, "AWS::Serverless::Function")
    (api_name,) = resources_of(template, "AWS::Serverless::HttpApi")
    (event,) = function["Properties"]["Events"].values()
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {"ApiId": {"Ref": api_name}}  # no Path, no Method: the $default route
    api = template["Resources"][api_name]["Properties"]
    assert "StageName" not in api  # the $default stage: no prefix in front of /docs or /api/v1
    assert api["CorsConfiguration"]["AllowOrigins"] == {"Ref": "CorsAllowOrigins"}
    assert api["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_the_function_finds_the_ingestor_through_cloud_map(template: dict[str, Any]) -> None:
    properties = only(template, "AWS::Serverless::Function")["Properties"]
    environment = properties["Environment"]["Variables"]
    discovery = only(template, "AWS::ServiceDiscovery::Service")["Properties"]
    namespace = only(template, "AWS::ServiceDiscovery::PrivateDnsNamespace")["Properties"]
    assert namespace["Name"] == {"Ref": "NamespaceName"}
    assert environment["INGESTOR_ADDRESS"] == {"Fn::Sub": f"{discovery['Name']}.${{NamespaceName}}:50051"}
    assert template["Outputs"]["IngestorAddress"]["Value"] == environment["INGESTOR_ADDRESS"]
    # Every variable is one the function reads, and the values parse.
    names = {name.upper() for name in FunctionSettings.model_fields}
    assert set(environment) <= names
    settings = FunctionSettings(**{k.lower(): v for k, v in environment.items() if isinstance(v, str)})
    # Lambda must outlive the longest call to the ingestor, connection included.
    assert properties["Timeout"] > settings.ingestor_timeout_s + settings.ingestor_connect_timeout_s
    assert properties["Timeout"] <= 30  # the HTTP API gives up at 30 s


def test_exactly_one_ingestor_task_and_never_two(template: dict[str, Any]) -> None:
    service = only(template, "AWS::ECS::Service")["Properties"]
    assert service["DesiredCount"] == 1
    assert service["LaunchType"] == "FARGATE"
    deployment = service["DeploymentConfiguration"]
    assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (100, 0)
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    (discovery_name,) = resources_of(template, "AWS::ServiceDiscovery::Service")
    assert service["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": [discovery_name, "Arn"]}}]


def test_the_ingestor_task_matches_its_image(template: dict[str, Any]) -> None:
    task = only(template, "AWS::ECS::TaskDefinition")["Properties"]
    (container,) = task["ContainerDefinitions"]
    ingestor_stage = read_dockerfile().stages["ingestor"]
    assert container["Image"] == {"Ref": "IngestorImageUri"}
    assert container["PortMappings"] == [{"ContainerPort": 50051, "Protocol": "tcp"}]
    assert str(container["PortMappings"][0]["ContainerPort"]) == ingestor_stage.last("EXPOSE").arguments
    assert container["HealthCheck"]["Command"] == ["CMD", *ingestor_stage.last("HEALTHCHECK").exec_form]
    for durable in ("false", "true"):
        (container,) = deployed(template, DurableStorage=durable)["IngestorTaskDefinition"]["Properties"][
            "ContainerDefinitions"
        ]
        environment = {item["Name"]: item["Value"] for item in container["Environment"]}
        assert set(environment) <= {f"INGESTOR_{name.upper()}" for name in IngestorSettings.model_fields}
        assert environment["INGESTOR_HOST"] == "0.0.0.0"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "IngestorLogGroup"}
    assert container["StopTimeout"] > IngestorSettings().shutdown_grace_s


def test_only_the_function_and_the_admin_range_reach_port_50051(template: dict[str, Any]) -> None:
    ingress = {
        name: body
        for name, body in resources_of(template, "AWS::EC2::SecurityGroupIngress").items()
        if body["Properties"]["GroupId"] == {"Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]}
    }
    sources = {
        name: body["Properties"].get("SourceSecurityGroupId") or body["Properties"].get("CidrIp")
        for name, body in ingress.items()
    }
    assert sorted(sources.values(), key=str) == sorted(
        [{"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}, {"Ref": "AdminCidr"}], key=str
    )
    assert all(body["Properties"]["FromPort"] == body["Properties"]["ToPort"] == 50051 for body in ingress.values())
    admin = next(body for body in ingress.values() if body["Properties"].get("CidrIp") == {"Ref": "AdminCidr"})
    assert admin["Condition"] == "HasAdminCidr"
    assert template["Parameters"]["AdminCidr"]["Default"] == ""
    for group in resources_of(template, "AWS::EC2::SecurityGroup").values():
        assert "SecurityGroupIngress" not in group["Properties"]
    egress = {
        name: body
        for name, body in resources_of(template, "AWS::EC2::SecurityGroupEgress").items()
        if body["Properties"]["GroupId"] == {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}
    }
    ((_, function_egress),) = egress.items()
    assert function_egress["Properties"]["DestinationSecurityGroupId"] == {
        "Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]
    }


@pytest.mark.parametrize("durable", ["false", "true"])
def test_nothing_outside_the_vpc_reaches_the_ingestor(template: dict[str, Any], durable: str) -> None:
    resources = deployed(template, DurableStorage=durable)
    kinds = {body["Type"] for body in resources.values()}
    # No load balancer, no public address, no API Gateway integration other than the function.
    assert not {kind for kind in kinds if kind.startswith("AWS::ElasticLoadBalancing")}
    assert not {kind for kind in kinds if kind.startswith("AWS::ApiGatewayV2::")}
    network = resources["IngestorService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]}]
    subnets = network["Subnets"]
    subnets = subnets if isinstance(subnets, list) else [subnets]
    assert all("PrivateSubnetIds" in str(subnet) for subnet in subnets)
    assert "LoadBalancers" not in resources["IngestorService"]["Properties"]
    # Who may open a connection to the task: the function's group, and an address range that
    # defaults to nothing and must be a range inside the VPC (the parameter says so).
    ingestor_group = {"Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]}
    sources = [
        body["Properties"].get("SourceSecurityGroupId") or body["Properties"]["CidrIp"]
        for body in resources.values()
        if body["Type"] == "AWS::EC2::SecurityGroupIngress" and body["Properties"]["GroupId"] == ingestor_group
    ]
    assert sources == [{"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}]  # AdminCidr empty by default
    assert "SecurityGroupIngress" not in resources["IngestorSecurityGroup"]["Properties"]
    with_admin = deployed(template, DurableStorage=durable, AdminCidr="10.0.8.0/24")
    assert "IngestorFromAdminIngress" in with_admin
    assert "0.0.0.0/0" not in str([body for body in with_admin.values() if body["Type"].endswith("Ingress")])
    # The task's address is published in the private namespace only.
    assert only(template, "AWS::ServiceDiscovery::PrivateDnsNamespace")["Properties"]["Vpc"] == {"Ref": "VpcId"}


# Actions whose resource cannot be named: ECR's login token, and the network interfaces Lambda makes.
UNSCOPED_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pipeline/ingestor-token-AbCdEf"
VARIANTS = [{}, {"DurableStorage": "true", "IngestorTokenSecretArn": SECRET}]


@pytest.mark.parametrize("parameters", VARIANTS, ids=["defaults", "durable-with-token"])
def test_least_privilege(template: dict[str, Any], parameters: dict[str, str]) -> None:
    resources = deployed(template, **parameters)
    roles = {name: body for name, body in resources.items() if body["Type"] == "AWS::IAM::Role"}
    expected = {"FunctionRole", "IngestorExecutionRole"} | ({"IngestorTaskRole"} if parameters else set())
    assert set(roles) == expected
    for name, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert statement["Effect"] == "Allow"
                assert not any("*" in action for action in actions), (name, actions)
                if statement["Resource"] == "*":
                    assert set(actions) <= UNSCOPED_ACTIONS, (name, actions)
    assert "Policies" not in resources["Function"]["Properties"]


def test_the_ingestor_token_comes_from_the_named_secret_only(template: dict[str, Any]) -> None:
    for parameters in ({}, {"IngestorTokenSecretArn": SECRET}):
        resources = deployed(template, **parameters)
        (container,) = resources["IngestorTaskDefinition"]["Properties"]["ContainerDefinitions"]
        environment = resources["Function"]["Properties"]["Environment"]["Variables"]
        statements = resources["IngestorExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        reads = [statement for statement in statements if "secretsmanager:GetSecretValue" in str(statement["Action"])]
        if not parameters:
            assert "Secrets" not in container
            assert "INGESTOR_TOKEN" not in environment
            assert reads == []
            continue
        # The task gets it from Secrets Manager at start, never as a plain variable of the task definition.
        assert container["Secrets"] == [{"Name": "INGESTOR_TOKEN", "ValueFrom": {"Ref": "IngestorTokenSecretArn"}}]
        assert "INGESTOR_TOKEN" not in {item["Name"] for item in container["Environment"]}
        assert environment["INGESTOR_TOKEN"] == {"Fn::Sub": "{{resolve:secretsmanager:${IngestorTokenSecretArn}}}"}
        (read,) = reads
        assert (read["Action"], read["Resource"]) == (
            "secretsmanager:GetSecretValue",
            {"Ref": "IngestorTokenSecretArn"},
        )
        assert "TaskRoleArn" not in resources["IngestorTaskDefinition"]["Properties"]  # ECS reads it, not the code
    assert {f"INGESTOR_{name.upper()}" for name in IngestorSettings.model_fields} >= {"INGESTOR_TOKEN"}
    assert "ingestor_token" in FunctionSettings.model_fields
    assert re.fullmatch(template["Parameters"]["IngestorTokenSecretArn"]["AllowedPattern"], SECRET)


def test_parameters_are_documented_and_grouped(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert all(len(body.get("Description", "")) > 20 for body in parameters.values())
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(parameters)
    deployment_doc = (ROOT / "docs" / "deploy.md").read_text()
    assert [name for name in parameters if f"`{name}`" not in deployment_doc] == []


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}
    assert {"ApiUrl", "IngestorAddress"} <= set(outputs)
    assert all(body.get("Description") for body in outputs.values())


# --- Who may call the HTTP API ----------------------------------------------------------------------


def test_the_http_api_is_signed_with_iam_by_default(template: dict[str, Any]) -> None:
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    parameter = template["Parameters"]["AuthorizerType"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("IAM", ["IAM", "JWT"])
    auth = deployed(template)["HttpApi"]["Properties"]["Auth"]
    assert auth == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    # The route itself names no authorizer of its own: the default one applies to it.
    (event,) = deployed(template)["Function"]["Properties"]["Events"].values()
    assert "Auth" not in event["Properties"]


def test_a_jwt_authorizer_when_the_parameter_says_so(template: dict[str, Any]) -> None:
    issuer, audience = "https://issuer.example/pool", "client-a,client-b"
    auth = deployed(template, AuthorizerType="JWT", JwtIssuer=issuer, JwtAudience=audience)["HttpApi"]["Properties"][
        "Auth"
    ]
    assert set(auth) == {"Authorizers", "DefaultAuthorizer"}  # no IAM authorizer beside it
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["IdentitySource"] == "$request.header.Authorization"
    assert authorizer["JwtConfiguration"] == {
        "issuer": {"Ref": "JwtIssuer"},
        "audience": {"Fn::Split": [",", {"Ref": "JwtAudience"}]},
    }


def test_jwt_without_an_issuer_or_an_audience_is_refused_before_deploying(template: dict[str, Any]) -> None:
    (rule,) = template["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AuthorizerType"}, "JWT"]}
    asserted = [assertion["Assert"] for assertion in rule["Assertions"]]
    assert asserted == [{"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]} for name in ("JwtIssuer", "JwtAudience")]
    for name in ("JwtIssuer", "JwtAudience"):
        assert template["Parameters"][name]["Default"] == ""


# --- Durable storage -------------------------------------------------------------------------------

EFS_KINDS = {"AWS::EFS::FileSystem", "AWS::EFS::MountTarget", "AWS::EFS::AccessPoint"}
DATA_DIR = "/var/lib/ingestor"


def test_memory_only_by_default_and_nothing_of_efs(template: dict[str, Any]) -> None:
    assert template["Parameters"]["DurableStorage"]["Default"] == "false"
    resources = deployed(template)
    assert not EFS_KINDS & {body["Type"] for body in resources.values()}
    assert {"DataSecurityGroup", "DataFromIngestorIngress", "IngestorToDataEgress", "IngestorTaskRole"}.isdisjoint(
        resources
    )
    task = resources["IngestorTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    assert {"TaskRoleArn", "Volumes"}.isdisjoint(task)  # the ingestor calls no AWS API
    assert "MountPoints" not in container
    assert "INGESTOR_DATA_DIR" not in {item["Name"] for item in container["Environment"]}
    assert resources["IngestorService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == {
        "Ref": "PrivateSubnetIds"
    }
    # Every EFS piece is conditional: none can appear in a memory-only stack.
    for name, body in template["Resources"].items():
        if body["Type"] in EFS_KINDS or name in {
            "DataSecurityGroup",
            "DataFromIngestorIngress",
            "IngestorToDataEgress",
        }:
            assert body["Condition"] == "UseDurableStorage", name


def test_durable_storage_mounts_an_encrypted_file_system_at_the_data_dir(template: dict[str, Any]) -> None:
    resources = deployed(template, DurableStorage="true")
    file_system = resources["DataFileSystem"]
    assert file_system["Properties"]["Encrypted"] is True
    assert file_system["DeletionPolicy"] == file_system["UpdateReplacePolicy"] == "Retain"
    task = resources["IngestorTaskDefinition"]["Properties"]
    (volume,) = task["Volumes"]
    assert volume["EFSVolumeConfiguration"] == {
        "FilesystemId": {"Ref": "DataFileSystem"},
        "TransitEncryption": "ENABLED",
        "AuthorizationConfig": {"AccessPointId": {"Ref": "DataAccessPoint"}, "IAM": "ENABLED"},
    }
    (container,) = task["ContainerDefinitions"]
    assert container["MountPoints"] == [{"SourceVolume": volume["Name"], "ContainerPath": DATA_DIR, "ReadOnly": False}]
    assert container["ReadonlyRootFilesystem"] is True  # writes go to the volume only
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["INGESTOR_DATA_DIR"] == DATA_DIR
    assert IngestorSettings(data_dir=environment["INGESTOR_DATA_DIR"]).data_dir is not None
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["IngestorTaskRole", "Arn"]}
    # The access point writes as the image's user, under a directory of its own.
    ingestor_stage = read_dockerfile().stages["ingestor"]
    uid, _, gid = ingestor_stage.last("USER").arguments.partition(":")
    access_point = resources["DataAccessPoint"]["Properties"]
    assert access_point["FileSystemId"] == {"Ref": "DataFileSystem"}
    assert access_point["PosixUser"] == {"Uid": uid, "Gid": gid or uid}
    assert access_point["RootDirectory"]["Path"] == "/ingestor"
    creation = access_point["RootDirectory"]["CreationInfo"]
    assert (creation["OwnerUid"], creation["OwnerGid"]) == (uid, gid or uid)
    assert DATA_DIR in [json_path for item in ingestor_stage.all("VOLUME") for json_path in item.exec_form]


def test_durable_storage_keeps_one_task_in_the_subnets_that_have_a_mount_target(template: dict[str, Any]) -> None:
    resources = deployed(template, DurableStorage="true")
    mount_targets = [body["Properties"] for body in resources.values() if body["Type"] == "AWS::EFS::MountTarget"]
    subnets = [target["SubnetId"] for target in mount_targets]
    assert subnets == [{"Fn::Select": [index, {"Ref": "PrivateSubnetIds"}]} for index in (0, 1)]
    assert all(
        target["SecurityGroups"] == [{"Fn::GetAtt": ["DataSecurityGroup", "GroupId"]}] for target in mount_targets
    )
    service = resources["IngestorService"]
    assert service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == subnets
    assert service["Properties"]["DesiredCount"] == 1
    deployment = service["Properties"]["DeploymentConfiguration"]
    assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (100, 0)
    # The task starts once the mount targets exist.
    assert service["DependsOn"] == "DataMountTargetsReady"
    names = [name for name, body in resources.items() if body["Type"] == "AWS::EFS::MountTarget"]
    assert resources["DataMountTargetsReady"]["Metadata"]["MountTargets"] == [{"Ref": name} for name in names]
    assert deployed(template)["DataMountTargetsReady"]["Metadata"]["MountTargets"] == []


def test_only_the_ingestor_speaks_nfs_to_the_file_system(template: dict[str, Any]) -> None:
    resources = deployed(template, DurableStorage="true")
    data_group = {"Fn::GetAtt": ["DataSecurityGroup", "GroupId"]}
    ingestor_group = {"Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]}
    ingress = [
        body["Properties"]
        for body in resources.values()
        if body["Type"] == "AWS::EC2::SecurityGroupIngress" and body["Properties"]["GroupId"] == data_group
    ]
    assert [
        (rule["SourceSecurityGroupId"], rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in ingress
    ] == [(ingestor_group, "tcp", 2049, 2049)]
    assert "SecurityGroupIngress" not in resources["DataSecurityGroup"]["Properties"]
    egress = resources["IngestorToDataEgress"]["Properties"]
    assert (egress["GroupId"], egress["DestinationSecurityGroupId"], egress["FromPort"], egress["ToPort"]) == (
        ingestor_group,
        data_group,
        2049,
        2049,
    )


def test_the_task_role_mounts_and_writes_that_file_system_and_nothing_else(template: dict[str, Any]) -> None:
    role = deployed(template, DurableStorage="true")["IngestorTaskRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert statement["Resource"] == {"Fn::GetAtt": ["DataFileSystem", "Arn"]}
    assert statement["Condition"] == {
        "StringEquals": {"elasticfilesystem:AccessPointArn": {"Fn::GetAtt": ["DataAccessPoint", "Arn"]}}
    }


# --- The archive ------------------------------------------------------------------------------------


ARCHIVE_RESOURCES = {"ArchiveBucket", "ArchiveBucketPolicy", "ArchiveDatabase", "ArchiveTable"}


def test_no_archive_by_default(template: dict[str, Any]) -> None:
    resources = deployed(template)
    assert ARCHIVE_RESOURCES.isdisjoint(resources)
    (container,) = resources["IngestorTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert "INGESTOR_ARCHIVE_URL" not in {item["Name"] for item in container["Environment"]}


@pytest.mark.parametrize("durable", ["false", "true"])
def test_the_archive_bucket_is_private_encrypted_and_turns_cold(template: dict[str, Any], durable: str) -> None:
    resources = deployed(template, Archive="true", DurableStorage=durable)
    assert set(resources) >= ARCHIVE_RESOURCES
    bucket = resources["ArchiveBucket"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    properties = bucket["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    cold, abort = properties["LifecycleConfiguration"]["Rules"]
    assert cold["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": {"Ref": "ArchiveColdAfterDays"}}]
    assert cold["Prefix"] == {"Fn::Sub": "${ArchivePrefix}/"}
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    (deny,) = resources["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    task = resources["IngestorTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["INGESTOR_ARCHIVE_URL"] == {"Fn::Sub": "s3://${ArchiveBucket}/${ArchivePrefix}"}
    # The spool is writable: the data directory, or ephemeral storage mounted at the same place.
    assert [mount["ContainerPath"] for mount in container["MountPoints"]] == ["/var/lib/ingestor"]
    assert ("INGESTOR_ARCHIVE_SPOOL_DIR" in environment) == (durable == "false")
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["IngestorTaskRole", "Arn"]}


def test_the_task_role_writes_only_under_the_archive_prefix(template: dict[str, Any]) -> None:
    role = deployed(template, Archive="true")["IngestorTaskRole"]["Properties"]
    (policy,) = role["Policies"]  # no file system without DurableStorage
    write, listing = policy["PolicyDocument"]["Statement"]
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert write["Resource"] == {"Fn::Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}/*"}
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", {"Fn::GetAtt": ["ArchiveBucket", "Arn"]})
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${ArchivePrefix}/*"}}}
    both = deployed(template, Archive="true", DurableStorage="true")["IngestorTaskRole"]["Properties"]["Policies"]
    assert [item["PolicyName"] for item in both] == ["mount-the-data-file-system", "write-the-archive"]


def test_athena_reads_the_archive_through_a_projected_glue_table(template: dict[str, Any]) -> None:
    table = deployed(template, Archive="true")["ArchiveTable"]["Properties"]["TableInput"]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert (parameters["projection.date.type"], parameters["projection.date.format"]) == ("date", "yyyy-MM-dd")
    assert parameters["storage.location.template"] == {
        "Fn::Sub": "s3://${ArchiveBucket}/${ArchivePrefix}/date=${!date}/"
    }
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    columns = [(column["Name"], column["Type"]) for column in table["StorageDescriptor"]["Columns"]]
    # The columns of the files the ingestor writes (ingestor/archive_files.py).
    from ingestor.archive_files import schema

    assert [name for name, _ in columns] == schema().names
    assert columns == [("timestamp", "timestamp"), ("value", "double"), ("category", "string"), ("sequence", "bigint")]
