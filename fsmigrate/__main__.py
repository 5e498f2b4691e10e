"""`python -m fsmigrate` is the `fsmigrate` command."""

from fsmigrate.cli import main

main()
