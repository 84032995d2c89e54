"""Editor support that runs inside other programs: the Pygments lexers (Vinefile, JX).

May import the language's keywords only.
"""
