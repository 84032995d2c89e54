"""The worker: cache, sandboxes, resource monitor, libraries and peer server.

May import wire and common only, so that a worker starts fast and carries only what it needs.
"""
