"""`python -m bench`: run the benchmark arms and print the table of ratios."""

from bench.cli import main

raise SystemExit(main())
