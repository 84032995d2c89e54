"""The languages: Vinefile (and JX) text into one Workflow of plain specs.

May import core (for the state directory's names) and common; only parser.py imports lark.
"""
