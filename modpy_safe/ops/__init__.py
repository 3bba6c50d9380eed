"""The operator's view: every child's state, Prometheus metrics, logs, a configuration check.

* ``counters`` — the one-call hooks the rest of modpy_safe makes (a request, a
  failed load); cheap enough for the request path.
* ``state`` and ``publish`` — each child publishes a small JSON file of its
  state under the server's runtime directory; the status page reads them all.
* ``metrics`` — the same numbers in prometheus_client's multiprocess files,
  merged into the text format.
* ``snapshot`` — what one child holds, as JSON-ready values; ``page`` — the
  HTML of the whole server.
* ``logs`` — application logging into Apache's error log.
* ``check`` and ``config`` — ``modpy-safe check CONFIG``.
"""
