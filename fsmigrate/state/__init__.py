"""The SQLite state file: its schema and upgrades, runs, operations, the compact layout of before-images, prune."""
