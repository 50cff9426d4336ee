"""One module per check: each a pure function from catalog records to findings."""
