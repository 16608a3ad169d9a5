"""Bulk exports take turns: many callers at once cost the memory of a few exports, not of all of them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from functions.wire import decode_export, decode_export_response
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor, MakeProcess

pytestmark = pytest.mark.serial

EXPORT = "/ingestor.v1.IngestorService/ExportReadings"
STATUS = "/ingestor.v1.IngestorService/GetStatus"
MIB = 2**20


def fill(address: str, readings: int, per_write: int = 200_000) -> None:
    """Push ``readings`` readings in three categories, in columnar writes of ``per_write``."""
    options = [("grpc.max_send_message_length", 8 * MIB)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for start in range(0, readings, per_write):
            count = min(per_write, readings - start)
            sequence = np.arange(start, start + count)
            columns = pb.ReadingColumns(
                timestamps_ns=(1_700_000_000_000_000_000 + sequence * 1000).astype("<i8").tobytes(),
                values=sequence.astype("<f8").tobytes(),
                category_codes=(sequence % 3).astype("<u2").tobytes(),
            )
            written = stub.WriteReadings(
                pb.WriteReadingsRequest(columns=columns, column_categories=["A", "B", "C"]), timeout=30
            )
            assert written.accepted == count


def status_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident memory) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> None:
    """Start VmHWM over from the current resident memory (Linux's clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def status_and_export(address: str, deadline_s: float) -> tuple[int, int]:
    """On a channel (and connection) of its own, as one function instance: GetStatus, then a full
    export; the buffered count and the readings received."""
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 * MIB)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        get_status = channel.unary_unary(
            STATUS,
            request_serializer=pb.GetStatusRequest.SerializeToString,
            response_deserializer=pb.GetStatusResponse.FromString,
        )
        status = await get_status(pb.GetStatusRequest(), timeout=deadline_s)
        export = channel.unary_stream(EXPORT, request_serializer=pb.ExportReadingsRequest.SerializeToString)
        received = 0
        async for message in export(pb.ExportReadingsRequest(chunk_size=65_536), timeout=deadline_s):
            received += len(decode_export_response(message))
        return status.buffered, received


async def many_instances(address: str, instances: int, deadline_s: float) -> list[tuple[int, int] | BaseException]:
    calls = (status_and_export(address, deadline_s) for _ in range(instances))
    return await asyncio.gather(*calls, return_exceptions=True)


def test_200_instances_exporting_a_million_readings_each_are_all_answered_in_bounded_memory(
    make_ingestor_process: MakeProcess,
) -> None:
    ingestor = make_ingestor_process(capacity=1_000_000, max_message_bytes=8 * MIB)
    fill(ingestor.address, 1_000_000)
    pid = ingestor.process.pid
    before = status_of(pid)["VmRSS"]
    reset_peak(pid)

    started = time.monotonic()
    answers = asyncio.run(many_instances(ingestor.address, 200, deadline_s=120))
    elapsed = time.monotonic() - started

    assert answers == [(1_000_000, 1_000_000)] * 200
    peak = status_of(pid)["VmHWM"]
    rise = (peak - before) / MIB
    print(f"200 x 1M-reading exports in {elapsed:.1f} s; ingestor RSS {before / MIB:.0f} MiB, peak +{rise:.0f} MiB")
    # Four exports at a time hold a few megabytes each; all 200 at once took +240 to +330 MiB.
    assert peak - before < 64 * MIB


def _hold_an_export(address: str) -> tuple[grpc.Channel, object]:
    """An export whose caller reads nothing: with a fixed 64 KiB window it stalls after the first
    message, and keeps its turn until cancelled."""
    channel = grpc.insecure_channel(
        address, options=[("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)]
    )
    call = pb_grpc.IngestorServiceStub(channel).ExportReadings(pb.ExportReadingsRequest(), timeout=60)
    return channel, call


def test_an_export_waits_its_turn_until_its_own_deadline_and_pages_and_status_do_not_wait(
    make_ingestor: MakeIngestor,
) -> None:
    ingestor: ThreadedIngestor = make_ingestor(capacity=300_000, max_concurrent_exports=1, max_message_bytes=8 * MIB)
    fill(ingestor.address, 300_000)
    holder_channel, holder = _hold_an_export(ingestor.address)
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        time.sleep(0.3)  # the held export has its turn

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as waited:
            list(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=0.5))
        assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert time.monotonic() - started >= 0.5  # it waited, it was not refused

        # A page (one message at most) and the status are answered meanwhile.
        page = list(stub.ExportReadings(pb.ExportReadingsRequest(max_readings=10), timeout=2))
        assert len(decode_export(page)) == 10
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=2).buffered == 300_000

        holder.cancel()  # type: ignore[attr-defined]
        holder_channel.close()
        # The turn is free again, also after a wait that ended by its deadline.
        assert len(decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))) == 300_000
