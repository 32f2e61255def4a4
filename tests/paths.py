"""Where the tests find the project, its recorded fixtures and the Python running them."""

import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
PYTHON = sys.executable
