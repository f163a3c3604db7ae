import sys

from ouvir.export.cli import main

sys.exit(main())
