"""Singing-voice synthesis models of the zoo (DiffSinger, …)."""
