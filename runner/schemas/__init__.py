"""Marshmallow schemas: what the API accepts and answers; the OpenAPI document is generated from them."""

# Nothing is exported at package level: import the module you need.
__all__: list[str] = []
