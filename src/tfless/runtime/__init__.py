"""Execution: compile a Graph into a Plan and run it."""
