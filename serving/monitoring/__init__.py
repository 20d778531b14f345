"""Closing the loop: live scores of logged forecasts, the monitor rule, the `monitor` command."""
