"""Cross-cutting pieces every domain may use: database, errors, HTTP helpers, security."""
