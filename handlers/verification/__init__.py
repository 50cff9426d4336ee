"""What every drill and restore shares: one step runner (steps.py) and one verification plan (plan.py),
so that a copy is verified the same way whichever of them made it."""
