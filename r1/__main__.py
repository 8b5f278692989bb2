import sys

from r1.cli import main

sys.exit(main())
