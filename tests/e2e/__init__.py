"""Both processes end to end: real uvicorn and a real ingestor, talking over loopback."""
