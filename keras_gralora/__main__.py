"""`python -m keras_gralora ...`: the command line (`keras_gralora/cli.py`)."""

import sys

from keras_gralora.cli import main

if __name__ == "__main__":
    sys.exit(main())
