"""`python -m podium ...`: the CLI as `podium ...` runs it (a multi-device launcher re-runs this command line)."""

from podium.cli import main

main()
