"""`python -m queuectl`."""

from .cli import main

main()
