"""The `coinflow` command: one entry point over every layer (cli.main)."""
