"""``python -m sshpipe``: the command-line interface."""
from sshpipe.cli import main

raise SystemExit(main())
