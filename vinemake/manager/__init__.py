"""The manager: places tasks on workers, orders transfers, recovers lost work.

May import backends, wire and common.
"""
