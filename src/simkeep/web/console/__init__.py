"""The staff console: the counter, the review queue, lines, stock and the dashboard, by role."""
