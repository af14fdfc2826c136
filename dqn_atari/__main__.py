import sys

from dqn_atari.cli import main

sys.exit(main())
