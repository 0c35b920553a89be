"""The appliance: make a local LLM useful on your documents, offline, with every result on the record."""
from appliance.offline import enforce_offline

__version__ = "0.1.0"

enforce_offline()
