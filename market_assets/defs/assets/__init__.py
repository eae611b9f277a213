"""Assets, one module per dataset family."""
