# -*- test-case-name: tests.test_cli -*-
"""
C{python -m squeak <command> ...}: the same command line as the C{squeak}
console script (L{squeak.cli}); squeak's master also starts its workers
this way (C{python -m squeak worker}).
"""

import sys

from squeak.cli import main

sys.exit(main())
