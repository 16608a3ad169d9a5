"""Local runs and load runs of both processes (python -m scripts.run_local, python -m scripts.loadtest)."""
