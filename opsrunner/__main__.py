"""Allow `python -m opsrunner`."""

from opsrunner.cli import main

main()
