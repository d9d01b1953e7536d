"""The demo: Keycloak, the worker and two relying-party apps on loopback."""
