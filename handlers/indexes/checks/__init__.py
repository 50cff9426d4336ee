"""One module per check: each a pure function from system-catalog records to findings."""
