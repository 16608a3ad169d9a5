"""A batch id (HTTP: Idempotency-Key) names one batch of readings: the same readings again are a
replay, other readings are refused (FAILED_PRECONDITION, HTTP 422 naming the key) and nothing is
stored; attempts that overlap wait for the first and replay it; all of it across restarts, and with
data directories written before fingerprints existed."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from devtools.processes import ServerProcess, ThreadedIngestor
from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeIngestor, MakeStack
from tests.support.slow_disk import slow_disk

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z
BATCH = [
    {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"},
    {"timestamp": "2024-01-20T10:00:01Z", "value": 44.5, "category": "B"},
]


def as_messages(values: list[float], names: list[str]) -> pb.WriteReadingsRequest:
    return pb.WriteReadingsRequest(
        readings=[
            pb.Reading(timestamp={"seconds": T0 + i}, value=value, category=name)
            for i, (value, name) in enumerate(zip(values, names, strict=True))
        ]
    )


def as_columns(values: list[float], names: list[str], dictionary: list[str], narrow: bool) -> pb.WriteReadingsRequest:
    codes = np.array([dictionary.index(name) for name in names])
    columns = pb.ReadingColumns(
        timestamps_ns=((T0 + np.arange(len(values))) * 1_000_000_000).astype("<i8").tobytes(),
        values=np.array(values, dtype="<f8").tobytes(),
    )
    if narrow:
        columns.category_codes_u8 = codes.astype("<u1").tobytes()
    else:
        columns.category_codes = codes.astype("<u2").tobytes()
    return pb.WriteReadingsRequest(columns=columns, column_categories=dictionary)


def write(
    stub: pb_grpc.IngestorServiceStub, request: pb.WriteReadingsRequest, batch_id: str
) -> pb.WriteReadingsResponse:
    request.batch_id = batch_id
    return stub.WriteReadings(request, timeout=10)


def total(stub: pb_grpc.IngestorServiceStub) -> int:
    return stub.GetStatus(pb.GetStatusRequest(), timeout=5).total_ingested


@pytest.fixture(params=["memory", "durable"])
def server(request: pytest.FixtureRequest, tmp_path: Path, make_ingestor: MakeIngestor) -> ThreadedIngestor:
    settings = {"data_dir": tmp_path / "data"} if request.param == "durable" else {}
    return make_ingestor(capacity=1000, **settings)


def test_the_same_readings_in_any_form_are_a_replay_other_readings_are_refused(server: ThreadedIngestor) -> None:
    values, names = [1.0, 2.0, 3.0], ["north", "south", "north"]
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert write(stub, as_messages(values, names), "k-1").duplicate is False
        # The same readings as columns, with either width of codes and a dictionary in another
        # order with a name no reading uses: the same batch.
        for narrow in (False, True):
            again = write(stub, as_columns(values, names, ["unused", "south", "north"], narrow), "k-1")
            assert (again.accepted, again.duplicate) == (3, True)
        others = {
            "a value": as_messages([1.0, 2.0, 3.5], names),
            "a category": as_messages(values, ["north", "south", "south"]),
            "a timestamp": as_columns(values, names, ["north", "south"], narrow=False),
            "a reading less": as_messages(values[:2], names[:2]),
        }
        others["a timestamp"].columns.timestamps_ns = (
            np.frombuffer(others["a timestamp"].columns.timestamps_ns, "<i8") + 1
        ).tobytes()
        write(stub, as_messages([0.0], ["zero"]), "k-zero")
        others["the sign of zero"] = as_messages([-0.0], ["zero"])  # other bits, another reading
        for what, request in others.items():
            batch_id = "k-zero" if what == "the sign of zero" else "k-1"
            with pytest.raises(grpc.RpcError) as refused:
                write(stub, request, batch_id)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, what
            assert f"batch_id {batch_id!r} was used before for other readings" in refused.value.details()
        assert total(stub) == 4  # nothing stored by the refusals
        names_held = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10)).categories
        assert sorted(names_held) == ["north", "south", "zero"]  # a refused batch adds no name


@pytest.mark.slow
def test_over_http_a_reused_key_is_a_422_naming_it(api_process: ServerProcess) -> None:
    with api_http(api_process, timeout=20) as http:
        assert http.post("/readings", json=BATCH, headers={"Idempotency-Key": "key-7"}).status_code == 202
        changed = [BATCH[0], {**BATCH[1], "value": 44.6}]
        refused = http.post("/readings", json=changed, headers={"Idempotency-Key": "key-7"})
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "Idempotency-Key 'key-7' was used before for other readings: a retry must send the same "
            "readings, and other readings need a new key (nothing was stored)"
        }
        replay = http.post("/readings", json=BATCH, headers={"Idempotency-Key": "key-7"})
        assert (replay.status_code, replay.headers["idempotent-replayed"]) == (202, "true")
        assert http.get("/status").json()["total_ingested"] == 2


def test_fingerprints_survive_a_restart(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    values, names = [5.0, 6.0], ["A", "B"]
    for attempt in range(2):
        ingestor = make_ingestor(capacity=1000, data_dir=tmp_path / "data")
        with grpc.insecure_channel(ingestor.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            assert write(stub, as_messages(values, names), "survivor").duplicate is (attempt == 1)
            with pytest.raises(grpc.RpcError) as refused:
                write(stub, as_messages([5.0, 7.0], names), "survivor")
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert total(stub) == 2
        ingestor.close()  # before the next one opens the directory


# The data directory's schema before fingerprints (format 1), as an earlier ingestor wrote it.
FORMAT_1 = """
CREATE TABLE batches (end_seq INTEGER PRIMARY KEY, start_seq INTEGER NOT NULL, timestamps_ns BLOB NOT NULL,
                      vals BLOB NOT NULL, codes BLOB NOT NULL);
CREATE TABLE categories (code INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE batch_ids (position INTEGER PRIMARY KEY, batch_id TEXT NOT NULL UNIQUE, accepted INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
PRAGMA user_version = 1;
"""


def test_a_data_directory_of_format_1_is_read_and_upgraded(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    old = sqlite3.connect(data_dir / "readings.sqlite3")
    old.executescript(FORMAT_1)
    old.execute("PRAGMA journal_mode = WAL")
    old.execute(
        "INSERT INTO batches VALUES (2, 0, ?, ?, ?)",
        (
            (np.array([T0, T0 + 1]) * 1_000_000_000).astype("<i8").tobytes(),
            np.array([1.0, 2.0], "<f8").tobytes(),
            np.array([0, 0], "<u2").tobytes(),
        ),
    )
    old.execute("INSERT INTO categories VALUES (0, 'A')")
    old.execute("INSERT INTO batch_ids (batch_id, accepted) VALUES ('old-id', 2)")
    old.execute("INSERT INTO counters VALUES ('total_ingested', 2)")
    old.commit()
    old.close()

    for restart in range(2):
        ingestor = make_ingestor(capacity=1000, data_dir=data_dir)
        with grpc.insecure_channel(ingestor.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            assert total(stub) == 2 + restart
            # An id written without a fingerprint is recognised as before, whatever it carries.
            replay = write(stub, as_messages([9.0], ["Z"]), "old-id")
            assert (replay.accepted, replay.duplicate) == (2, True)
            assert write(stub, as_messages([3.0], ["A"]), "new-id").duplicate is bool(restart)
            with pytest.raises(grpc.RpcError) as refused:
                write(stub, as_messages([4.0], ["A"]), "new-id")
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert total(stub) == 3
        ingestor.close()  # before the next one opens the directory
    upgraded = sqlite3.connect(data_dir / "readings.sqlite3")
    assert upgraded.execute("PRAGMA user_version").fetchone() == (2,)
    rows = upgraded.execute("SELECT batch_id, length(fingerprint) FROM batch_ids ORDER BY position").fetchall()
    assert rows == [("old-id", None), ("new-id", 16)]
    upgraded.close()


@pytest.mark.slow
def test_attempts_in_flight_together_wait_for_the_first_and_replay_it(make_stack: MakeStack) -> None:
    # Every commit takes 0.5 s longer than the disk needs: all attempts below arrive while the first
    # one's commit is still running, truly at the same time (a barrier releases the threads at once).
    with slow_disk(fsync_delay_s=0.5) as disk:
        ingestor, api = make_stack(data_dir=disk / "data")
        same, other = 8, 3
        barrier = threading.Barrier(same + other)
        answers: list[tuple[str, httpx.Response]] = []

        def post(body: list[dict[str, object]], kind: str) -> None:
            with api_http(api, timeout=30) as http:
                barrier.wait(timeout=10)
                answers.append((kind, http.post("/readings", json=body, headers={"Idempotency-Key": "busy"})))

        changed = [{**BATCH[0], "value": 0.5}]
        threads = [threading.Thread(target=post, args=(BATCH, "same")) for _ in range(same)]
        threads += [threading.Thread(target=post, args=(changed, "other")) for _ in range(other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with api_http(api, timeout=30) as http:
            status = http.get("/status").json()
            held = http.get("/raw-data").json()
        # Both stop before their disk goes.
        api.stop()
        ingestor.stop()
    assert len(answers) == same + other
    # Whichever body came first decides what "busy" names; every attempt with it is acknowledged
    # (one stored, the others replayed once that commit was done), every other one refused.
    winner = "same" if any(kind == "same" and r.status_code == 202 for kind, r in answers) else "other"
    won = [r for kind, r in answers if kind == winner]
    lost = [r for kind, r in answers if kind != winner]
    assert [r.status_code for r in won] == [202] * len(won)
    assert sorted(str(r.headers.get("idempotent-replayed")) for r in won) == ["None"] + ["true"] * (len(won) - 1)
    assert [r.status_code for r in lost] == [422] * len(lost)
    stored = BATCH if winner == "same" else changed
    assert status["total_ingested"] == len(stored)
    assert [(r["value"], r["category"]) for r in held] == [(r["value"], r["category"]) for r in stored]
