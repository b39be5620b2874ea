"""Book covers: upload, validation, storage and serving of a book's cover image."""
