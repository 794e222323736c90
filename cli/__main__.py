import sys

from qmri.cli.main import main

sys.exit(main())
