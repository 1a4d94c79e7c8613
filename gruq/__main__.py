"""`python -m gruq ...`: see gruq.cli."""

from gruq.cli import run

if __name__ == "__main__":
    run()
