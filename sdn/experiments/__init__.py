"""The paper's measurements (SCIENCE.md §6), as functions that return tidy results."""
