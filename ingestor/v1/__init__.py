"""Code generated from proto/ingestor/v1/ingestor.proto by grpcio-tools (`make proto`). Never edit by hand."""
