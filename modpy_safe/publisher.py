"""``PythonHandler modpy_safe.publisher``: a drop-in replacement for mod_python.publisher.

A site written for ``mod_python.publisher`` switches by changing that one
directive. URLs map to page files and objects in them, form fields to
parameters, and ``__auth__``/``__access__``/``__auth_realm__`` protect pages,
as mod_python documents; what differs is listed in
``docs/migrating-from-publisher.md``. Pages are loaded through the safe
importer, so editing a page never leaks what its old version held (a
module-level database connection, say), and a page may declare a
``modpy_safe.Database`` like any handler file.

The rules live in ``web/publish.py`` (mapping, traversal, arguments, results)
and ``web/auth.py``; the plan of the request's configuration (``web/plan.py``)
serves the request, its scope and its error answer included.
"""
from __future__ import annotations

from .web import plan as _plan

__all__ = ["handler"]


#: Serve one request (the entry point mod_python calls): the plan of the
#: request's configuration serves it (see ``web/plan.py``).
handler = _plan.entry_point(_plan.publisher_plans, _plan.for_publisher)
