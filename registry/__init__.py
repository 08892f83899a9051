"""registry: the SQL prompt registry (versions, lineage, aliases, promotions).

Depends on nothing in `flows`; built in its own issue.
"""
