"""``python -m ns3_uml``: the ``ns3-uml`` command."""

import sys

from .cli import main

sys.exit(main())
