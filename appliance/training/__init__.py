"""Adaptation: LoRA adapters trained on dataset versions (adapter.py orchestrates; cpu.py and gpu.py are the
recipes; common.py what they share; data.py and dense.py their inputs). Importing this package imports no ML
library: the CLI starts fast."""
