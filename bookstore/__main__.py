"""Allow ``python -m bookstore`` as an alias of the ``bookstore`` command."""

from bookstore.cli import main

main()
