"""Marshmallow schemas: what the API accepts and answers; the OpenAPI document is generated from them."""
