"""`python -m gruq ...`: see gruq.cli."""

from gruq.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
