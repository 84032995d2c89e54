"""`python -m vinemake` runs the command-line front end."""

from vinemake.face.cli import main

main()
