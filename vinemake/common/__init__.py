"""Plain data and small helpers every layer shares: specs, tasks, errors, linking.

Imports nothing else of vinemake.
"""
