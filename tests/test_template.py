"""template.yaml says what the code and the Dockerfile expect (cfn-lint checks it against AWS in `make lint`)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.settings import FunctionSettings
from ingestor.settings import IngestorSettings
from tests.harness import ROOT
from tests.shipping import read_dockerfile, read_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return read_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def only(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (body,) = resources_of(template, kind).values()
    return body


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
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert set(environment) <= {f"INGESTOR_{name.upper()}" for name in IngestorSettings.model_fields}
    assert environment["INGESTOR_HOST"] == "0.0.0.0"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "IngestorLogGroup"}
    assert "TaskRoleArn" not in task  # the ingestor calls no AWS API
    assert container["StopTimeout"] > IngestorSettings().shutdown_grace_s


def test_only_the_function_and_the_admin_range_reach_port_50051(template: dict[str, Any]) -> None:
    ingress = resources_of(template, "AWS::EC2::SecurityGroupIngress")
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
    (egress,) = resources_of(template, "AWS::EC2::SecurityGroupEgress").values()
    assert egress["Properties"]["GroupId"] == {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}
    assert egress["Properties"]["DestinationSecurityGroupId"] == {"Fn::GetAtt": ["IngestorSecurityGroup", "GroupId"]}


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


def test_least_privilege(template: dict[str, Any]) -> None:
    roles = resources_of(template, "AWS::IAM::Role")
    assert set(roles) == {"FunctionRole", "IngestorExecutionRole"}
    for name, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert statement["Effect"] == "Allow"
                assert not any("*" in action for action in actions), (name, actions)
                if statement["Resource"] == "*":
                    assert set(actions) <= UNSCOPED_ACTIONS, (name, actions)
    assert "Policies" not in only(template, "AWS::Serverless::Function")["Properties"]


def test_parameters_are_documented_and_grouped(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert all(len(body.get("Description", "")) > 20 for body in parameters.values())
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(parameters)
    readme = (ROOT / "README.md").read_text()
    assert [name for name in parameters if f"`{name}`" not in readme] == []


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}
    assert {"ApiUrl", "IngestorAddress"} <= set(outputs)
    assert all(body.get("Description") for body in outputs.values())
