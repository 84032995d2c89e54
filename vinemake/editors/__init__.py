"""Editor support that runs inside other programs: the Pygments lexer.

May import the language's keywords only.
"""
