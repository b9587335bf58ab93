"""Operator and developer tools: the alert-timing CLI, operations commands, reporting, simulator, supervisor."""
