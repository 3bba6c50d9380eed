"""The reload machinery: load handler files into fresh module versions and retire old ones.

``importer`` loads, checks and leases module versions; ``resources`` records
what a version owns and closes what the next version no longer uses, found by
``reach`` (a bounded walk of what a version keeps) among the kinds ``kinds``
knows how to close.
"""
