"""The face: the `vinemake` command line and the glue that runs a workflow.

May import every layer below it: language, core, manager, backends, wire, common.
"""
