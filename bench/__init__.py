"""`make bench`: the project against a naive baseline and the in-process floor."""
