"""The languages: Vinefile (and JX) text into one Workflow of plain specs.

May import core (for the state directory's names) and common; only the parser modules
(parser.py for Vinefiles, jxparse.py for JX) import lark.
"""
