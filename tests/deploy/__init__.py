"""What ships: the Dockerfile, the template, Compose files, the locks and the generated code."""
