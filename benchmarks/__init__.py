"""Speed and quality benchmarks: `python -m benchmarks.<name>` from the repository root prints JSON (README.md here)."""
