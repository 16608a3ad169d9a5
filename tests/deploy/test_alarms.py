"""template.yaml's alarms and dashboard: on the metrics the code writes, notifying the optional topic."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.test_template import deployed, resources_of
from tests.support.shipping import read_template

TOPIC = "arn:aws:sns:eu-west-1:123456789012:pipeline-alarms"
NAMESPACE = {"Fn::Sub": "RealtimePipeline/${AWS::StackName}"}
# What the ingestor's EMF lines (ingestor/emf.py) and the handler's (functions/lambda_metrics.py) carry.
INGESTOR_EMF = {
    "ReadingsIngested",
    "ReadingsRejected",
    "ReadingsEvicted",
    "ReadingsLate",
    "SubscriberMissedReadings",
    "BufferedReadings",
    "BufferFillPercent",
    "GeneratorRunning",
    "WatchSubscribers",
    "NewestEventAgeSeconds",
    "DataDirBytes",
    "JournalCommitMilliseconds",
}
FUNCTION_EMF = {"Requests", "Latency", "ReadingsReturned", "ReadingsWritten", "IngestorCalls"}
FUNCTION_EMF |= {"IngestorCallLatency", "IngestorCallFailures", "ColdStart"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return read_template()


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body["Properties"] for name, body in resources.items() if body["Type"] == "AWS::CloudWatch::Alarm"}


def test_an_alarm_for_each_way_the_pipeline_fails(template: dict[str, Any]) -> None:
    found = alarms(template["Resources"])
    assert set(found) == {
        "FunctionErrorRateAlarm",
        "FunctionLatencyAlarm",
        "FunctionThrottlesAlarm",
        "IngestorNotRunningAlarm",
        "IngestorSilentAlarm",
        "BufferNearlyFullAlarm",
        "JournalCommitLatencyAlarm",
    }
    assert all(len(body["AlarmDescription"]) > 40 for body in found.values())
    # Those on the EMF lines name the namespace both processes write to, and metrics they write.
    for name in ("IngestorSilentAlarm", "BufferNearlyFullAlarm", "JournalCommitLatencyAlarm"):
        assert found[name]["Namespace"] == NAMESPACE
        assert found[name]["MetricName"] in INGESTOR_EMF
        assert found[name]["Dimensions"] == [{"Name": "service", "Value": "ingestor"}]
    # A task that is not there reports nothing: missing data is the alarm.
    assert found["IngestorNotRunningAlarm"]["TreatMissingData"] == "breaching"
    assert found["IngestorSilentAlarm"]["TreatMissingData"] == "breaching"
    assert found["FunctionLatencyAlarm"]["ExtendedStatistic"] == "p99"


@pytest.mark.parametrize("topic", ["", TOPIC])
def test_alarms_notify_the_topic_when_one_is_given(template: dict[str, Any], topic: str) -> None:
    for body in alarms(deployed(template, AlarmTopicArn=topic)).values():
        if topic:
            assert body["AlarmActions"] == body["OKActions"] == [{"Ref": "AlarmTopicArn"}]
        else:
            assert "AlarmActions" not in body
            assert "OKActions" not in body


def test_both_processes_write_emf_to_the_namespace_the_alarms_read(template: dict[str, Any]) -> None:
    resources = deployed(template)
    function = resources["Function"]["Properties"]["Environment"]["Variables"]
    assert function["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    assert function["POWERTOOLS_SERVICE_NAME"] == "pipeline-function"
    (container,) = resources["IngestorTaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["INGESTOR_METRICS_EMF"] == "true"
    assert environment["INGESTOR_METRICS_NAMESPACE"] == NAMESPACE


def test_the_dashboard_is_json_over_metrics_the_code_writes(template: dict[str, Any]) -> None:
    (dashboard,) = resources_of(template, "AWS::CloudWatch::Dashboard").values()
    body, variables = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables == {"Namespace": NAMESPACE}
    filled = re.sub(r"\$\{[^}]+\}", "x", body)  # what Fn::Sub fills in is a plain word
    widgets = json.loads(filled)["widgets"]
    named: set[str] = set()
    for widget in widgets:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], str):
                named.add(row[1])
            else:
                named.update(re.findall(r'MetricName=\\"(\w+)\\"', json.dumps(row[0]["expression"])))
    assert named
    assert named <= INGESTOR_EMF | FUNCTION_EMF, named - INGESTOR_EMF - FUNCTION_EMF
    alarm_widget = [widget for widget in widgets if widget["type"] == "alarm"]
    assert len(alarm_widget[0]["properties"]["alarms"]) == len(alarms(template["Resources"]))
