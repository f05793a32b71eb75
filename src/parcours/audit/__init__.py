"""One append-only, hash-chained trace of every access to personal or health data."""
