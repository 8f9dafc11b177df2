import sys

from microcnn.cli import main

sys.exit(main())
