"""A station on a moving line: cameras the station holds open, triggers that say which unit is in front of
them, and an answer to the line within its cycle time (see ``triggers.py`` for the records they share)."""
