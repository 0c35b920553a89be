"""The OpenAI-compatible server (app.py: endpoints; server.py: `appliance serve`; keys.py: API keys mapped to
access groups). Importing it imports neither FastAPI nor a model."""
