"""Evaluation against golden question sets: retrieval now; answers, judges and statistics build on it."""
