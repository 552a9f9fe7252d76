"""Trainers for the seeds' models (imports torch)."""
