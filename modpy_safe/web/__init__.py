"""The request side: routing, the per-configuration plan, responses, handlers, forms,
publishing and its authentication."""
