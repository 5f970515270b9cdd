"""Stage 4: the results database, figures and tables."""

#: The figures, in report order; each has workflow/sql/NAME.sql and a function in figures.py.
FIGURE_NAMES = ("savings", "footprint_time", "area_size", "page_types", "domains_per_host", "snapshot_interval")
