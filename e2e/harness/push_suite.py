"""Constants of the push-server suite (e2e/push_server: its conftest.py configures the
nodes with them, its tests use them; a conftest.py is not importable by name)."""

API_TOKEN = "e2e-publish-token"
