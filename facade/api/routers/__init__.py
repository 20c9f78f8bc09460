"""The facade's routes, one module per area."""
