"""NocoDB for the brands' staff: how it runs here (server.py) and its provisioning (provision.py)."""
