"""``python -m evalctl``: the same command line as the ``evalctl`` console script."""

from evalctl._cli._app import main

if __name__ == "__main__":
    main()
