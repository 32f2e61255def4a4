"""CRCR's downstream kit: what a downstream repository runs to report to the relay."""
