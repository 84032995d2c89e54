"""The build core: graph, keys, plan, file state, journal, store, engine, clean, reporter.

May import manager, backends, wire and common; never the language or the face.
"""
