"""Use cases the HTTP views, the CLI and the console call; each opens its own transaction."""

# Nothing is exported at package level: import the module you need.
__all__: list[str] = []
