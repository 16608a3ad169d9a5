"""The stateless function: FastAPI routes that call the ingestor over gRPC and aggregate with pandas."""
