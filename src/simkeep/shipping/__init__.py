"""Parcels carrying new SIMs: address regions and delivery estimates, carriers, tracking by webhook."""
