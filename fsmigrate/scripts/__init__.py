"""Migration scripts: loading them and their chain, the operations they yield, the context they plan with, plan files and drift decisions."""
