"""`python -m telelake` runs the command line."""

from telelake.cli import main

main()
