"""The ingestor accepts the function's keepalive pings, with calls or without (functions/channel.py)."""

from __future__ import annotations

import time

import grpc
import pytest

from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor
from tests.support.proxies import SilentDropProxy

# Pings every second for 4 s, with no call: gRPC's default server closes such a connection
# ("too_many_pings") after its third.
pytestmark = pytest.mark.slow

PINGING = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.use_local_subchannel_pool", 1),
]


def test_an_idle_connection_that_pings_every_second_is_kept(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=100)
    with SilentDropProxy(ingestor.address) as proxy, grpc.insecure_channel(proxy.address, options=PINGING) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).capacity == 100
        time.sleep(4.5)
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).capacity == 100
        assert proxy.connections == 1  # never closed and made anew
