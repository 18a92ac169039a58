"""Executors: where the coordinator's tasks run (``concurrent.futures.Executor``s)."""
