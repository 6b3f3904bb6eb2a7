"""Did the translation work? metrics (FID, KID), oracle (the attribute classifier behind flip
rates), evaluate (every figure for a workdir), report (report.json, index.html, panels)."""
