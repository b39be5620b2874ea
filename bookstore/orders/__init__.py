"""Orders: buying books against their stock, all or nothing, with idempotent retries."""
