"""The ingestor: generates readings, keeps them in a columnar ring buffer and serves them over gRPC.

This package imports nothing on purpose: the function ships the generated contract in
``ingestor/v1`` without the ingestor's own code and dependencies.
"""
