"""Pipeline stores."""
