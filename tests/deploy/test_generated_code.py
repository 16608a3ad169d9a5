"""The generated modules in ingestor/v1 are exactly what grpcio-tools makes from proto/ today."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

from devtools.processes import ROOT

GENERATED = ["ingestor_pb2.py", "ingestor_pb2.pyi", "ingestor_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path: Path) -> None:
    proto = ROOT / "proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(proto / "ingestor" / "v1" / "ingestor.proto"),
        ]
    )
    assert status == 0
    for name in GENERATED:
        fresh = (tmp_path / "ingestor" / "v1" / name).read_text()
        committed = (ROOT / "ingestor" / "v1" / name).read_text()
        assert committed == fresh, f"ingestor/v1/{name} is stale: run `make proto`"


def test_the_function_can_import_the_contract_without_the_ingestor() -> None:
    init = (ROOT / "ingestor" / "__init__.py").read_text()
    code = [line for line in init.splitlines() if line.strip() and not line.startswith(('"""', " "))]
    assert not [line for line in code if line.startswith(("import", "from"))]
