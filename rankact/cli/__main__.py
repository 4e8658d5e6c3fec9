"""`python -m rankact.cli ...` is `rankact ...`."""
from rankact.cli.main import main

main()
