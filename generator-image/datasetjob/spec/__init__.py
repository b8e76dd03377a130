"""The spec: its schema (the CRD is made from it), the typed model, safe parsing of documents,
the limits every input is held to, the item sources and how items are cut into shards. Pure."""
