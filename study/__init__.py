"""The study service: specs, launching on Ray, tracking, statistics, reports and the CLI."""
