"""INGESTOR_METRICS_EMF: the ingestor's key metrics as CloudWatch EMF lines on stdout, as on ECS."""

from __future__ import annotations

from typing import Any

import grpc

from devtools.waiting import wait_until
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.emf import check_emf, dimensions, emf_documents
from tests.support.factories import MakeProcess


def test_emf_lines_carry_what_grew_since_the_previous_line(make_ingestor_process: MakeProcess) -> None:
    ingestor = make_ingestor_process(
        capacity=100, metrics_emf="true", metrics_emf_interval_s=0.2, metrics_namespace="PipelineTests"
    )
    readings = [pb.Reading(timestamp={"seconds": 100 - i}, value=1.0, category="A") for i in range(30)]
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for chunk in (readings[:10], readings[10:]):
            stub.WriteReadings(pb.WriteReadingsRequest(readings=chunk))
        status = stub.GetStatus(pb.GetStatusRequest())

    def documents() -> list[dict[str, Any]]:
        return emf_documents("".join(ingestor.output))

    def all_counted() -> bool:
        return sum(document["ReadingsIngested"][0] for document in documents()) == status.total_ingested

    wait_until(all_counted, 10, "the EMF lines do not add up to what was stored")
    lines = documents()
    assert len(lines) >= 1
    for document in lines:
        check_emf(document)
        assert dimensions(document) == {"service": "ingestor"}
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PipelineTests"
    assert sum(document["ReadingsLate"][0] for document in lines) == status.late == 29
    assert lines[-1]["BufferedReadings"] == [30.0]
    assert lines[-1]["BufferFillPercent"] == [30.0]
