"""The question end to end: presets, the study runner (variants x seeds -> results.json), the report."""
