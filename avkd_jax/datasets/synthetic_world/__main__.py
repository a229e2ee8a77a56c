"""python -m avkd_jax.datasets.synthetic_world --root=DIR ...: see `cli.main`."""

import sys

from avkd_jax.datasets.synthetic_world.cli import main

sys.exit(main())
