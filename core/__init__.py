"""Settings, params, paths, files, tag names, tracking settings, console, liveness, rules."""
