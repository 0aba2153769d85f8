"""``python -m pcloudsh``: the same as the ``pcloudsh`` console script."""

import sys

from pcloudsh.main import main

sys.exit(main())
