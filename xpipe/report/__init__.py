"""Stage 4: the results database, figures and tables."""
