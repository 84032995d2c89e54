"""`python -m vinemake` runs the command-line front end."""

from vinemake.cli import main

main()
