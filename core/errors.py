"""The one base of every refusal coinflow reports to a user.

A `CoinflowError` says what was wrong with a request (bad data, a failed gate, a registry
refusal); nothing was changed by the step that raised it. Commands print its message and exit 1
(core.console); the API maps the registry's subclasses to HTTP statuses (serving.problems).
"""

from __future__ import annotations


class CoinflowError(Exception):
    """A refused request: the message names what was wrong; nothing was changed."""
