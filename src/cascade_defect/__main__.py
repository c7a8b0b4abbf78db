"""`python -m cascade_defect` is the `cascade-defect` command."""

from .cli import main

main()
