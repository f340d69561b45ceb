"""flotilla-volume: block volumes on a volume host (issue 11)."""
