"""Repository tools (GPU check, bench summaries, load tests, browser driver): run by make targets, not shipped in the wheel."""
