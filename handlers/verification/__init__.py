"""What every drill and restore shares: one step runner (steps.py) and one verification plan (plan.py)
with what a copy is compared with (references.py), so that a copy is verified the same way whichever
of them made it."""
