"""Grading a class: the engine that grades one submission, the worker pools, the gradebook, the run."""
