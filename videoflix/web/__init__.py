"""Every HTTP face: handlers, the segment lane, pages, request rules, OpenAPI."""
