"""Reserved subpackage (see DESIGN section 2)."""
