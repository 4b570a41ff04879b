"""Use cases the HTTP views, the CLI and the console call; each opens its own transaction."""
