"""bookstore: a REST API for a bookstore built on Litestar, msgspec, Piccolo and PostgreSQL."""
