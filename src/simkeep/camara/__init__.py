"""CAMARA APIs for relying parties (banks, apps): OAuth2 clients, Number Recycling and SIM Swap."""
