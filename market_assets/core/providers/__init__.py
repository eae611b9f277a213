"""Vendor adapters behind one protocol, and the registry that routes datasets to them."""
