"""The connector manifest (connector.json) and the JSON Schema it obeys (schema.json)."""

# Nothing is exported at package level: import the module you need.
__all__: list[str] = []
