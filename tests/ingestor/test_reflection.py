"""What grpcurl does, with no .proto at hand: list, describe and call through server reflection."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from devtools.processes import ThreadedIngestor


def test_list_describe_and_call_through_reflection(ingestor: ThreadedIngestor) -> None:
    with grpc.insecure_channel(ingestor.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        # grpcurl -plaintext ADDRESS list
        assert set(database.get_services()) >= {
            "ingestor.v1.IngestorService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        # grpcurl -plaintext ADDRESS describe ingestor.v1.IngestorService
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("ingestor.v1.IngestorService")
        assert [method.name for method in service.methods] == [
            "StartIngestion",
            "StopIngestion",
            "GetStatus",
            "ListReadings",
            "ExportReadings",
            "WriteReadings",
            "WatchReadings",
            "AggregateReadings",
            "GetHistory",
        ]
        reading = pool.FindMessageTypeByName("ingestor.v1.Reading")
        assert [(f.name, f.number) for f in reading.fields] == [("timestamp", 1), ("value", 2), ("category", 3)]

        def call(method_name: str, body: dict[str, object]) -> dict[str, object]:
            """grpcurl -plaintext -d BODY ADDRESS ingestor.v1.IngestorService/METHOD"""
            method = service.methods_by_name[method_name]
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            rpc = channel.unary_unary(
                f"/{service.full_name}/{method.name}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            response = rpc(json_format.ParseDict(body, request_class()), timeout=5)
            return json_format.MessageToDict(response, preserving_proto_field_name=True)

        written = call(
            "WriteReadings",
            {"readings": [{"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"}]},
        )
        assert written == {"accepted": "1"}  # proto3 JSON writes uint64 as a string, as grpcurl shows it
        assert call("ListReadings", {"page_size": 10}) == {
            "readings": [{"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"}]
        }
        assert call("GetStatus", {})["total_ingested"] == "1"
