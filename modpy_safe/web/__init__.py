"""The request side: routing, the per-configuration plan, phases and filters, responses,
handlers, forms, publishing and its authentication."""
