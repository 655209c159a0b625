"""`python -m iclab ...` and the `iclab` console script: the command line. As a rank of a multi-process
torchrun job the process ends with os._exit (see `iclab.launch.rank_main`)."""

from iclab.cli import app
from iclab.launch import rank_main


def main() -> None:
    rank_main(app)


if __name__ == "__main__":
    main()
