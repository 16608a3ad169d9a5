"""The stateless function: FastAPI routes that call the ingestor over gRPC and aggregate with pandas."""

import sys

if "pandas" not in sys.modules and "pyarrow" not in sys.modules:
    # pandas imports pyarrow as it loads whenever pyarrow is installed (a fifth of the function's
    # cold start), only to offer it a storage for strings the function never uses. pyarrow is here
    # for Parquet and Arrow exports (functions/formats.py), imported when one is asked for: hidden
    # while pandas loads, so that pandas keeps its own storage and the cold start stays as it was.
    sys.modules["pyarrow"] = None  # type: ignore[assignment]
    try:
        import pandas  # noqa: F401
    finally:
        del sys.modules["pyarrow"]
