"""Values and names several modules share, each with one home."""

# Temperature [K] above which a cell belongs to a hotspot: the reference work's threshold.
HOTSPOT_THRESHOLD = 875.0

# Units of the canonical fields, used where the data carry no ``units`` attrs
# ("1": dimensionless, as CF and the simulator write it).
FIELD_UNITS = {"temperature": "K", "pressure": "GPa", "microstructure": "1", "reaction": "1"}
