"""Analytics over the conversation store: metrics (:mod:`.metrics`), the knowledge-gap finder
(:mod:`.gaps`) and the HTML/SVG and text reports (:mod:`.report`).

Used by ``botkit report`` and the console's ``/console/analytics`` page.
"""

from __future__ import annotations

from botkit.analytics.gaps import GapCluster, GapQuestion, find_gaps, gap_questions, gaps_csv
from botkit.analytics.metrics import Report, compute_report

__all__ = ["GapCluster", "GapQuestion", "Report", "compute_report", "find_gaps", "gap_questions", "gaps_csv"]
