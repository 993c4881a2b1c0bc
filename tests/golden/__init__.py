"""Golden snapshots of the shipped scenarios (see snapshot.py)."""
