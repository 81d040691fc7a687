import sys

from videoflix.cli import main

sys.exit(main())
