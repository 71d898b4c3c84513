import sys

from optisr.cli.main import main

sys.exit(main())
