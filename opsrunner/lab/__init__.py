"""Disposable real Debian hosts (systemd-nspawn) for tests and the demo."""
