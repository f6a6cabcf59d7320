"""The paper's measurements (docs/theory.md §6), as functions that return tidy results."""
