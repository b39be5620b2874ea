"""The catalogue: books anyone can browse and signed-in users can curate."""
