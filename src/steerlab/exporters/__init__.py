"""Exporters: each module exposes ``export_cli(intervention, args)`` plus a typed library function."""
