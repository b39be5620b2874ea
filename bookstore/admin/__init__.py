"""The back office: Piccolo admin over the service's own tables and accounts, in a process of its
own (``bookstore admin``), so that the API's workers never load it (FastAPI, pydantic, Jinja:
+12.5 MiB each).
"""
