"""Durable mode on a bare host: the data directory it creates is 0700 and its SQLite files 0600,
whatever the umask, as in the image. A directory that exists keeps its mode, with a warning when
others than its owner may enter it."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from devtools.processes import ServerProcess
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeProcess

T0 = 1_705_744_800


@pytest.fixture
def start_with_umask(make_ingestor_process: MakeProcess) -> Callable[[str, Path], ServerProcess]:
    """``start_with_umask(umask, data_dir)``: a durable ingestor started under that umask."""

    def start(umask: str, data_dir: Path) -> ServerProcess:
        prefix = ("sh", "-c", f'umask {umask} && exec "$@"', "sh")
        return make_ingestor_process(prefix=prefix, data_dir=data_dir, capacity=1000)

    return start


def write_some(ingestor: ServerProcess) -> None:
    """Something committed, so that the write-ahead log exists next to the database."""
    readings = [pb.Reading(timestamp={"seconds": T0 + i}, value=float(i), category="A") for i in range(100)]
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10).accepted == 100


def modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


@pytest.mark.parametrize("umask", ["000", "022"])
def test_a_new_data_directory_is_private_whatever_the_umask(
    tmp_path: Path, umask: str, start_with_umask: Callable[[str, Path], ServerProcess]
) -> None:
    data_dir = tmp_path / "data"
    ingestor = start_with_umask(umask, data_dir)
    write_some(ingestor)
    files = modes(data_dir)  # while it runs: the write-ahead log is there too
    assert ingestor.stop() == 0
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert {"readings.sqlite3", "readings.sqlite3-wal"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE((data_dir / "readings.sqlite3").stat().st_mode) == 0o600
    assert not [line for line in ingestor.output if "WARNING" in line]


def test_an_existing_open_directory_keeps_its_mode_and_is_warned_about(
    tmp_path: Path, start_with_umask: Callable[[str, Path], ServerProcess]
) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    ingestor = start_with_umask("022", data_dir)
    write_some(ingestor)
    files = modes(data_dir)
    assert ingestor.stop() == 0
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755
    assert files == dict.fromkeys(files, 0o600)
    warnings = [entry for entry in map(json.loads, ingestor.output) if entry["level"] == "WARNING"]
    assert [entry["message"] for entry in warnings] == [
        f"data directory {data_dir} has mode 0755: others than its owner may read the readings; "
        "chmod 0700 makes it private"
    ]


def test_an_existing_private_directory_is_used_without_a_warning(
    tmp_path: Path, start_with_umask: Callable[[str, Path], ServerProcess]
) -> None:
    data_dir = tmp_path / "private"
    data_dir.mkdir(mode=0o700)
    ingestor = start_with_umask("022", data_dir)
    write_some(ingestor)
    assert ingestor.stop() == 0
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert not [line for line in ingestor.output if "WARNING" in line]
