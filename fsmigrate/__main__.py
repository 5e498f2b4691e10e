"""`python -m fsmigrate` is the `fsmigrate` command."""
from .cli import main

main()
