"""De-identification."""
