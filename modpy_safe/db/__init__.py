"""Connections: the driver-independent pool, ``Database`` and one module per driver."""
