"""HTML reports with charts (matplotlib, embedded as PNG)."""
