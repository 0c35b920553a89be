"""`python -m appliance.jobs SPEC`: the process a job runs in (see appliance/jobs/__init__.py)."""
import sys
from pathlib import Path

from appliance.jobs import run_job

sys.exit(run_job(Path(sys.argv[1])))
