"""The ladder: every rung as one resumable job (job.py), the decision rules (rules.py), the figures read back from
the audit store (evidence.py) and the decision record (record.py)."""
