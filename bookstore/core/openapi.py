"""OpenAPI generation details Litestar leaves out: closed request bodies, how public routes say so, and
documented response headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.datastructures import ResponseHeader

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition

__all__ = ["PUBLIC", "ClosedStructSchemaPlugin", "documented_header"]

# `security` of routes anyone may call (with `exclude_from_auth=True`): the empty requirement
# documents anonymous access; Litestar would otherwise show the app-wide bearer requirement
# (litestar#3013), and an empty list is ignored.
PUBLIC: Sequence[dict[str, list[str]]] = ({},)


def documented_header(name: str, description: str, *, example: str) -> ResponseHeader:
    """A response header the handler sets itself, documented with a string ``schema``.

    OpenAPI 3.1 requires a ``schema`` on every header object, and ``ResponseHeader`` has no field
    for it: Litestar derives it from ``type(value)``. So the example is also the value, and
    ``documentation_only`` keeps Litestar from sending it.
    """
    return ResponseHeader(name=name, value=example, example=example, description=description, documentation_only=True)


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """Document ``forbid_unknown_fields`` structs with ``additionalProperties: false``.

    The server rejects unknown fields with 400; without this the document claims they are
    allowed, and clients (and schemathesis) take it at its word.
    """

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        struct_info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(struct_info, msgspec.inspect.StructType) and struct_info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
