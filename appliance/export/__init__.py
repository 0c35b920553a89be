"""Export of adapters trained here to GGUF (gguf.py: llama.cpp's converters from the bundle, quantization; job.py:
the `appliance export gguf` run; check.py: equivalence with transformers + peft). Importing it imports no ML
library."""
