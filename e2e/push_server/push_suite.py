"""Constants of the push-server suite (imported by its tests; conftest.py is not
importable by name when several suites run together)."""

API_TOKEN = "e2e-publish-token"
