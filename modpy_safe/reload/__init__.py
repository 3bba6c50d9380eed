"""The reload machinery: load handler files into fresh module versions and retire old ones.

``importer`` loads, checks and leases module versions; ``resources`` records
what a version owns and closes what the next version no longer uses.
"""
