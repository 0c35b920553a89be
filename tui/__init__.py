"""The terminal UI (Textual): thin screens over the appliance library; long work runs as jobs (appliance/jobs)."""
