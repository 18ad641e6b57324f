"""Audit, enforce and operate runs on ansible-runner, streamed into the store."""
