"""Test agent that dies before it can say hello."""
import sys

sys.stderr.write("broken_agent: cannot start, missing configuration\n")
raise SystemExit(7)
