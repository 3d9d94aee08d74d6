"""The storage report and its renderers."""
