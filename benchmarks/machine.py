"""What the benchmark scripts print about the machine beside their figures (they run as scripts, so this
module is imported from their own folder)."""

from __future__ import annotations

import os


def load_text() -> str:
    """The 1/5/15-minute load averages and the core count: a figure measured beside other work is slow."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
