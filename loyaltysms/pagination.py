"""Keyset pagination for every list: `?cursor=&limit=` → {results: [...], next: cursor|null}.

DRF's CursorPagination does the keyset part (WHERE id > last ORDER BY id, no OFFSET); this
class changes its envelope to the public contract and answers bad input with 400, not 404.
"""

from __future__ import annotations

import re
from urllib import parse

from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class KeysetPagination(CursorPagination):
    ordering = "id"
    page_size = DEFAULT_LIMIT
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT

    def get_page_size(self, request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
            raise serializers.ValidationError({"limit": [f"a whole number from 1 to {MAX_LIMIT}"]})
        return int(raw)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except Exception:
            cursor = False
        # Orderings here are on integer ids; anything else in a cursor was not made by us.
        if cursor is False or (
            cursor is not None
            and (
                cursor.reverse
                or cursor.offset
                or not re.fullmatch(r"[0-9]{1,18}", str(cursor.position or ""))
            )
        ):
            raise serializers.ValidationError({"cursor": ["not a cursor this API returned"]})
        return cursor

    def get_next_cursor(self) -> str | None:
        link = self.get_next_link()
        if link is None:
            return None
        return parse.parse_qs(parse.urlsplit(link).query)[self.cursor_query_param][0]

    def get_paginated_response(self, data) -> Response:
        return Response({"results": data, "next": self.get_next_cursor()})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as ?cursor= for the next page; null on the last page.",
                },
            },
        }


class NewestFirstPagination(KeysetPagination):
    ordering = "-id"
