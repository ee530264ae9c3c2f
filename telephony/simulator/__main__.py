"""``python -m telephony.simulator``: call the hotline app the way Twilio would."""

import sys

from telephony.simulator.cli import main

sys.exit(main())
