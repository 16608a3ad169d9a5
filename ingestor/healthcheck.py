"""``python -m ingestor.healthcheck``: exit 0 when the local ingestor answers SERVING, 1 otherwise.

The container's HEALTHCHECK runs it: it speaks the standard gRPC health protocol
(``grpc.health.v1.Health/Check``) to the port the ingestor listens on, as any orchestrator would.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from ingestor.settings import IngestorSettings

_WILDCARDS = {"", "0.0.0.0", "::"}


def local_address(settings: IngestorSettings) -> str:
    """Where to reach the ingestor from its own host: loopback when it listens on every address."""
    host = "127.0.0.1" if settings.host in _WILDCARDS else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.port}"


def check(address: str, service: str = "", timeout_s: float = 3.0) -> str:
    """The serving status the ingestor at ``address`` reports for ``service`` ("" is the whole server)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # The stubs leave out the methods the generated HealthStub adds in its __init__.
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)  # type: ignore[attr-defined]
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingestor.healthcheck", description=__doc__)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer (default 3)")
    args = parser.parse_args(argv)
    try:
        address = local_address(IngestorSettings())
    except ValidationError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 1
    try:
        status = check(address, timeout_s=args.timeout)
    except grpc.RpcError as error:
        print(f"{address}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    print(f"{address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
