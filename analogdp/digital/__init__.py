"""Digital reference algorithms: dual propagation, equilibrium propagation, back-propagation."""
