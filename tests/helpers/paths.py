"""Where the repository is."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
