"""`python -m podium ...`: the CLI, as `podium ...` runs it (a multi-device run's launcher re-runs this command line)."""

from podium.cli import main

main()
