"""Training: the generic trainer, strategies, and the RAMER stages / protocol."""
