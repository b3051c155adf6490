"""Importers, one module per annotation format."""
