"""The connector manifest (connector.json) and the JSON Schema it obeys (schema.json)."""
