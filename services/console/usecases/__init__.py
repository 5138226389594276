"""The console's use cases: sign-in and sessions, reading pages from the API, the live feed."""
