"""`python -m alignment.cli ...` is `rankact ...`."""
from alignment.cli.main import main

main()
