"""The wire: the protocol and file transfers between manager, workers and peers.

May import common only; the only place that knows the wire format.
"""
