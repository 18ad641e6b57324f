"""Channels, advance notices of maintenance, alerts and change records (3.1.3, 3.4, 5.3.1)."""
