"""The one switch for shape and dtype asserts on the streaming path.

Off by default, because every check costs time on every hop; set SAMSTREAM_DEBUG=1
to turn them all on while developing or testing.
"""
import os

CHECKS = os.environ.get("SAMSTREAM_DEBUG", "") not in ("", "0")
