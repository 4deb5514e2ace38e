"""``python -m tandem.cli``: how node and service processes are started."""

from tandem.cli import main

main()
